"""Hold-out protocols: split validated interactions into training data and per-user truth.

Every random choice is a seeded hash of IDs (``xxhash64(seed, salt, ids)``), never ``rand()``, so
the same data and seed give the same split whatever the partitioning or the cluster.

* ``personalize`` (Amazon Personalize's training metrics): about ``holdout_user_fraction`` of the
  users with at least two interactions are held out (a user is held out when the hash of its ID
  falls below the fraction). For each held-out user the newest ``holdout_interaction_fraction`` of
  its interactions (``bround(n * f)``, at least 1 and at most ``n - 1``; ties in time broken by
  hash) are the truth and the rest is its input. The model trains on the other users plus the
  held-out users' input, so held-out users are known to it.
* ``temporal``: one global time cut. Interactions newer than the ``1 - test_fraction`` quantile of
  TIMESTAMP (``percentile_approx``, relative error 1e-4) are the test part. Test pairs whose user
  or item never occurs in the training part are dropped from the truth: no recipe can recommend an
  item it has never seen, and a user without history only measures the popularity backfill.
* ``stratified-user`` / ``stratified-item``: the protocol behind the published MovieLens tables
  (``python_stratified_split`` of the recommenders project). Rows are grouped by user (or item),
  shuffled by seeded hash, and the first ``bround((1 - test_fraction) * n)`` rows of each group
  train (half to even, as Python's ``round``). Test items never seen in training stay in the truth.

In every protocol the truth keeps only the events training would use (``prepare.event_types`` and
``prepare.event_value_threshold``), is one row per (user, item), and excludes items the user
already has in the training part: seen items are removed from the candidates, so they could never
be hit. Evaluated users are exactly the users with a non-empty truth.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from batchrec import logs
from batchrec.columns import ITEM_ID, TIMESTAMP, USER_ID
from batchrec.config import EvaluateSettings, PrepareSettings
from batchrec.errors import DataError, UsageError

log = logging.getLogger(__name__)

PERSONALIZE = "personalize"
TEMPORAL = "temporal"
STRATIFIED_USER = "stratified-user"
STRATIFIED_ITEM = "stratified-item"
PROTOCOLS = (PERSONALIZE, TEMPORAL, STRATIFIED_USER, STRATIFIED_ITEM)
QUANTILE_ACCURACY = 10000
_HASH_RANGE = 1 << 40
_N = "_n"
_POS = "_pos"
_TEST = "_test"


@dataclass
class Split:
    """One hold-out split.

    Attributes:
        protocol: the protocol name.
        train: interactions (input columns) the model trains on.
        truth: ``USER_ID, ITEM_ID`` relevant held-out pairs, distinct, none of them seen.
        seen: ``USER_ID, ITEM_ID`` training pairs of the evaluated users (excluded from candidates).
        users: ``USER_ID`` of the evaluated users (those with a non-empty truth).
        stats: split sizes (filled by :func:`split_stats`).
    """

    protocol: str
    train: DataFrame
    truth: DataFrame
    seen: DataFrame
    users: DataFrame
    stats: dict = dataclasses.field(default_factory=dict)

    def persist(self) -> "Split":
        for df in (self.train, self.truth, self.seen, self.users):
            df.persist()
        return self

    def unpersist(self) -> None:
        for df in (self.train, self.truth, self.seen, self.users):
            df.unpersist()


def check_protocol(protocol: str) -> None:
    """Raises UsageError naming the known protocols."""
    if protocol not in PROTOCOLS:
        raise UsageError(f"unknown evaluation protocol {protocol!r}; expected one of "
                         f"{', '.join(PROTOCOLS)}")


def uniform(seed: int, salt: str, *columns: str) -> Column:
    """A deterministic pseudo-random number in [0, 1) from a hash of ``columns`` and the seed."""
    digest = F.xxhash64(F.lit(int(seed)), F.lit(salt), *[F.col(c) for c in columns])
    return F.pmod(digest, F.lit(_HASH_RANGE)) / float(_HASH_RANGE)


def split_interactions(interactions: DataFrame, protocol: str, settings: EvaluateSettings,
                       prepare: PrepareSettings = PrepareSettings(),
                       seed: int | None = None) -> Split:
    """Split ``interactions`` by ``protocol`` (see the module docstring).

    Args:
        interactions: validated interactions (USER_ID, ITEM_ID, TIMESTAMP, optional EVENT_TYPE,
            EVENT_VALUE, ...).
        protocol: one of :data:`PROTOCOLS`.
        settings: the ``[evaluate]`` section (fractions and seed).
        prepare: the ``[prepare]`` section; its event filters decide what counts as relevant.
        seed: overrides ``settings.seed`` (the parameter search carves validation data with it).

    Raises:
        UsageError: unknown protocol or a fraction outside (0, 1).
        DataError: too few users for the protocol, or no user left with a non-empty truth.
    """
    check_protocol(protocol)
    seed = settings.seed if seed is None else seed
    for name in ("holdout_user_fraction", "holdout_interaction_fraction", "test_fraction"):
        value = getattr(settings, name)
        if not 0 < value < 1:
            raise UsageError(f"evaluate.{name} = {value}; expected a fraction between 0 and 1")
    with logs.stage(log, "split", protocol=protocol, seed=seed) as info:
        if protocol == PERSONALIZE:
            tagged = _personalize(interactions, settings, seed)
        elif protocol == TEMPORAL:
            tagged = _temporal(interactions, settings)
        else:
            by = USER_ID if protocol == STRATIFIED_USER else ITEM_ID
            tagged = _stratified(interactions, by, settings.test_fraction, seed)
        split = _finish(protocol, tagged, interactions.columns, prepare)
        split.stats = split_stats(split, tagged, seed)
        info.update(users=split.stats["evaluated_users"], truth=split.stats["truth_pairs"])
    if split.stats["evaluated_users"] == 0:
        raise DataError(
            f"{protocol} protocol left no user to evaluate: {split.stats['users']} users, "
            f"{split.stats['train_interactions']} training and {split.stats['test_interactions']} "
            f"test interactions, no relevant unseen test item; expected at least 1 user with "
            f"held-out interactions (more users or interactions are needed)")
    return split


def _personalize(interactions: DataFrame, settings: EvaluateSettings, seed: int):
    per_user = Window.partitionBy(USER_ID)
    newest_first = per_user.orderBy(F.col(TIMESTAMP).desc(), uniform(seed, "order", ITEM_ID, TIMESTAMP))
    eligible_users = (interactions.groupBy(USER_ID).count().where(F.col("count") >= 2).count())
    needed = math.ceil(1 / settings.holdout_user_fraction)
    if eligible_users < needed:
        raise DataError(
            f"personalize protocol holds out {settings.holdout_user_fraction:.0%} of the users with "
            f"at least 2 interactions: found {eligible_users} such users, expected at least {needed}")
    held = uniform(seed, "user", USER_ID) < settings.holdout_user_fraction
    frac = settings.holdout_interaction_fraction
    ranked = (
        interactions.withColumn(_N, F.count(F.lit(1)).over(per_user))
        .withColumn(_POS, F.row_number().over(newest_first))
        .withColumn("_held", held & (F.col(_N) >= 2))
    )
    n_truth = F.least(F.greatest(F.bround(F.col(_N) * frac), F.lit(1)), F.col(_N) - 1)
    return ranked.withColumn(_TEST, F.col("_held") & (F.col(_POS) <= n_truth))


def _temporal(interactions: DataFrame, settings: EvaluateSettings):
    cutoff = interactions.agg(F.percentile_approx(
        TIMESTAMP, 1.0 - settings.test_fraction, QUANTILE_ACCURACY)).first()[0]
    if cutoff is None:
        raise DataError("temporal protocol: the interactions are empty; expected rows with TIMESTAMP")
    log.info("temporal protocol: test interactions are those after TIMESTAMP %d", cutoff)
    return interactions.withColumn(_TEST, F.col(TIMESTAMP) > F.lit(cutoff))


def _stratified(interactions: DataFrame, by: str, test_fraction: float, seed: int):
    other = ITEM_ID if by == USER_ID else USER_ID
    group = Window.partitionBy(by)
    shuffled = group.orderBy(uniform(seed, "shuffle", by, other, TIMESTAMP), other, TIMESTAMP)
    ranked = (interactions.withColumn(_N, F.count(F.lit(1)).over(group))
              .withColumn(_POS, F.row_number().over(shuffled)))
    return ranked.withColumn(_TEST, F.col(_POS) > F.bround(F.col(_N) * (1.0 - test_fraction)))


def relevant_events(test: DataFrame, prepare: PrepareSettings) -> DataFrame:
    """Test rows of the event types and values training uses (no window or history cap)."""
    from batchrec.datasets.prepare import select_events

    rules = dataclasses.replace(prepare, lookback_days=None, half_life_days=None,
                                max_user_history_length_percentile=1.0)
    return select_events(test, rules)


def _finish(protocol: str, tagged: DataFrame, columns: list[str], prepare: PrepareSettings) -> Split:
    train = tagged.where(~F.col(_TEST)).select(columns)
    test = tagged.where(F.col(_TEST)).select(columns)
    train_pairs = train.select(USER_ID, ITEM_ID).distinct()
    if protocol == TEMPORAL:
        test = (test.join(train.select(USER_ID).distinct(), USER_ID, "left_semi")
                .join(train.select(ITEM_ID).distinct(), ITEM_ID, "left_semi"))
    truth = (relevant_events(test, prepare).select(USER_ID, ITEM_ID).distinct()
             .join(train_pairs, [USER_ID, ITEM_ID], "left_anti"))
    users = truth.select(USER_ID).distinct()
    seen = train_pairs.join(users, USER_ID, "left_semi")
    return Split(protocol, train, truth, seen, users)


def split_stats(split: Split, tagged: DataFrame, seed: int) -> dict:
    """Sizes of the split: one aggregation over the tagged rows and one over the truth."""
    is_train = ~F.col(_TEST)
    sizes = tagged.agg(
        F.count(F.lit(1)).alias("interactions"),
        F.countDistinct(USER_ID).alias("users"),
        F.countDistinct(ITEM_ID).alias("items"),
        F.sum(is_train.cast("long")).alias("train_interactions"),
        F.countDistinct(F.when(is_train, F.col(USER_ID))).alias("train_users"),
        F.countDistinct(F.when(is_train, F.col(ITEM_ID))).alias("train_items"),
    ).first().asDict()
    truth = split.truth.agg(F.count(F.lit(1)).alias("n"), F.countDistinct(USER_ID).alias("u")).first()
    stats = {"protocol": split.protocol, "seed": seed}
    stats.update({k: int(v or 0) for k, v in sizes.items()})
    stats["test_interactions"] = stats["interactions"] - stats["train_interactions"]
    stats["truth_pairs"] = int(truth["n"])
    stats["evaluated_users"] = int(truth["u"])
    return stats
