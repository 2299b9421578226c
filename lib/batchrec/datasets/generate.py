"""Deterministic synthetic datasets in Amazon Personalize's formats, at any size.

Every row is computed on the executors from ``spark.range`` and a per-row hash, so nothing is built on
the driver and the same seed and end date give the same rows whatever the partitioning. A uniform draw
is ``xxhash64(seed, row id, salt)`` mapped to [0, 1); each salt is a different, independent draw.

The data has structure a recommender can learn:

* users and items belong to hidden taste clusters: item position ``p`` is in cluster ``p % C`` and
  user position ``q`` in cluster ``q % C``;
* user activity follows a shifted Pareto law over positions (density ~ (x + x0)^-2, x = q / n_users):
  most users have a few interactions, a few have many, and users with a single one exist;
* item popularity follows a Zipf-Mandelbrot law (density ~ (x + x0)^-1) over positions, both within
  a cluster and overall, so an item popular in its cluster is popular overall too;
* an interaction goes with probability ``in_cluster_probability`` to an item of the user's cluster and
  otherwise to a globally popular item; in-taste events carry higher EVENT_VALUEs;
* item CATEGORY values are derived from the cluster (with noise), so metadata carries signal too.

Positions are mapped to the public IDs by an affine bijection (``id_permutation``) so that ``i0`` is not
the most popular item.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import uuid
from dataclasses import dataclass
from typing import Optional

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from batchrec import columns as C, fs
from batchrec.dates import SECONDS_PER_DAY
from batchrec.errors import JobError, UsageError
from batchrec.logs import stage

log = logging.getLogger(__name__)

CATEGORY = "CATEGORY"
PRICE = "PRICE"
AGE = "AGE"
TIER = "TIER"
USER_PREFIX = "u"
ITEM_PREFIX = "i"
CATEGORY_PREFIX = "c"
MULTI_VALUE_SEPARATOR = "|"

EVENT_TYPES = ("view", "click", "cart", "purchase")
EVENT_TYPE_SHARES = (0.60, 0.25, 0.10, 0.05)
TIERS = ("bronze", "silver", "gold")
IN_CLUSTER_PROBABILITY = 0.8
# Shape of the laws (see the module docstring); scale-free, so the shape is the same at every size.
USER_ACTIVITY_X0 = 0.08
ITEM_POPULARITY_X0 = 0.01
YOUNG_ITEM_FRACTION = 0.10
MAX_YOUNG_ITEM_DAYS = 7
OLD_ITEM_MAX_AGE_DAYS = 365
PRIMARY_CATEGORY_PROBABILITY = 0.9
# Bounded so that a * p in id_permutation fits in a signed long.
MAX_ENTITIES = 2**31 - 1
ROWS_PER_PARTITION = 500_000

# Salts: one per independent draw.
_S_USER, _S_TASTE, _S_ITEM, _S_EVENT, _S_VALUE, _S_TS = 1, 2, 3, 4, 5, 6
_S_YOUNG, _S_CREATED, _S_CAT_N, _S_CAT1, _S_CAT1_NOISE, _S_CAT2, _S_CAT3 = 11, 12, 13, 14, 15, 16, 17
_S_PRICE_BASE, _S_PRICE, _S_AGE, _S_TIER, _S_PERM_USERS, _S_PERM_ITEMS = 18, 19, 21, 22, 31, 32
_UNIT_BITS = 53


def generate_datasets(
    spark: SparkSession,
    n_users: int,
    n_items: int,
    n_interactions: int,
    seed: int = 42,
    span_days: int = 90,
    clusters: int = 20,
    end_date: Optional[dt.date] = None,
    in_cluster_probability: float = IN_CLUSTER_PROBABILITY,
) -> dict[str, DataFrame]:
    """Build the synthetic interactions, items and users (lazily; nothing is computed here).

    Args:
        spark: the session.
        n_users: users in the users dataset; interactions use IDs ``u0`` .. ``u{n_users-1}``.
        n_items: items in the items dataset; interactions use IDs ``i0`` .. ``i{n_items-1}``.
        n_interactions: exact number of interaction rows.
        seed: same seed (and end date), same rows.
        span_days: the interaction timestamps cover this many days ending at the end of ``end_date``.
        clusters: hidden taste clusters (at most ``n_items`` are used).
        end_date: last day of the span (UTC); default today.
        in_cluster_probability: chance that an interaction goes to an item of the user's cluster.

    Returns:
        ``{"interactions", "items", "users"}`` DataFrames in Personalize columns.

    Raises:
        UsageError: a size or parameter is out of range.
    """
    _check_arguments(n_users, n_items, n_interactions, span_days, clusters, in_cluster_probability)
    if not isinstance(seed, int) or not -(2**63) <= seed < 2**63:
        raise UsageError(f"generate: seed={seed!r}; expected a 64-bit signed integer")
    if clusters > n_items:
        log.warning("clusters=%d > n_items=%d; using %d clusters", clusters, n_items, n_items)
        clusters = n_items
    end_date = end_date or dt.datetime.now(dt.timezone.utc).date()
    end_ts = _epoch_seconds(end_date + dt.timedelta(days=1)) - 1
    start_ts = end_ts + 1 - span_days * SECONDS_PER_DAY
    young_days = max(1, min(MAX_YOUNG_ITEM_DAYS, span_days // 4))
    p = _Params(seed, n_users, n_items, clusters, start_ts, end_ts, young_days)
    return {
        "interactions": _interactions(spark, p, n_interactions, in_cluster_probability),
        "items": _items(spark, p),
        "users": _users(spark, p),
    }


def id_permutation(n: int, seed: int, kind: str) -> tuple[int, int]:
    """The bijection ``position -> (a * position + b) % n`` from hidden positions to ID numbers.

    Args:
        n: size of the ID range.
        seed: the generator's seed.
        kind: ``"users"`` or ``"items"``.

    Returns:
        ``(a, b)`` with ``gcd(a, n) == 1``, so the map is a permutation of ``range(n)``.
    """
    salt = _S_PERM_USERS if kind == "users" else _S_PERM_ITEMS
    mix = (seed * 1_000_003 + salt * 7_919) % (2**61 - 1)
    a = max(1, int(n * 0.6180339887) + mix % max(1, n // 7))  # golden ratio: scatters neighbours
    while math.gcd(a, n) != 1:
        a += 1
    return a % n if n > 1 else 1, mix % n


@dataclass(frozen=True)
class _Params:
    seed: int
    n_users: int
    n_items: int
    clusters: int
    start_ts: int  # first second of the span (epoch seconds, UTC)
    end_ts: int  # last second of the span
    young_days: int  # young items are created within the last young_days days of the span


def _check_arguments(n_users, n_items, n_interactions, span_days, clusters, in_cluster_probability):
    for name, value, high in (("n_users", n_users, MAX_ENTITIES), ("n_items", n_items, MAX_ENTITIES),
                              ("n_interactions", n_interactions, 2**62),
                              ("span_days", span_days, 100_000), ("clusters", clusters, MAX_ENTITIES)):
        if not isinstance(value, int) or not 1 <= value <= high:
            raise UsageError(f"generate: {name}={value!r} is out of range; expected an integer "
                             f"from 1 to {high}")
    if not 0.0 <= in_cluster_probability <= 1.0:
        raise UsageError(f"generate: in_cluster_probability={in_cluster_probability!r}; expected 0 to 1")


def _epoch_seconds(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp())


def _range(spark: SparkSession, n: int) -> DataFrame:
    # The partition count depends only on the size, so the written files are the same on any cluster.
    return spark.range(0, n, 1, max(1, -(-n // ROWS_PER_PARTITION)))


def _uniform(seed: int, key: Column, salt: int) -> Column:
    """A deterministic draw in [0, 1) for each ``key``, independent across salts."""
    h = F.xxhash64(F.lit(seed).cast("long"), key.cast("long"), F.lit(salt))
    return h.bitwiseAND(F.lit((1 << _UNIT_BITS) - 1)).cast("double") / float(1 << _UNIT_BITS)


def _floor_index(fraction: Column, n) -> Column:
    """``floor(n * fraction)`` clamped into ``[0, n - 1]`` (guards rounding at fraction ~ 1)."""
    n_col = n if isinstance(n, Column) else F.lit(n)
    return F.least(F.floor(fraction * n_col).cast("long"), n_col.cast("long") - 1)


def pareto_fraction(u: Column, x0: float) -> Column:
    """Inverse CDF of the density ``x0 (1 + x0) / (x + x0)^2`` on [0, 1) (user activity)."""
    return u * x0 / (1.0 + x0 - u)


def zipf_fraction(u: Column, x0: float) -> Column:
    """Inverse CDF of the density ``1 / ((x + x0) ln((1 + x0) / x0))`` on [0, 1) (item popularity)."""
    return (F.exp(u * math.log((1.0 + x0) / x0)) - 1.0) * x0


def _public_id(prefix: str, position: Column, n: int, seed: int, kind: str) -> Column:
    a, b = id_permutation(n, seed, kind)
    number = F.pmod(position * F.lit(a) + F.lit(b), F.lit(n))
    return F.concat(F.lit(prefix), number.cast("string"))


def _item_creation(p: _Params, position: Column) -> Column:
    """CREATION_TIMESTAMP of the item at ``position``: a function of the position alone, so the
    interactions can respect it without joining the items."""
    young = _uniform(p.seed, position, _S_YOUNG) < YOUNG_ITEM_FRACTION
    u = _uniform(p.seed, position, _S_CREATED)
    young_ts = F.lit(p.end_ts) - F.floor(u * (p.young_days * SECONDS_PER_DAY)).cast("long")
    old_ts = F.lit(p.start_ts - 1) - F.floor(u * (OLD_ITEM_MAX_AGE_DAYS * SECONDS_PER_DAY)).cast("long")
    return F.when(young, young_ts).otherwise(old_ts)


def _interactions(spark: SparkSession, p: _Params, n: int, in_cluster: float) -> DataFrame:
    rid = F.col("id")
    k = p.clusters
    user_pos = _floor_index(pareto_fraction(_uniform(p.seed, rid, _S_USER), USER_ACTIVITY_X0), p.n_users)
    item_u = zipf_fraction(_uniform(p.seed, rid, _S_ITEM), ITEM_POPULARITY_X0)
    user_cluster = F.pmod(F.col("user_pos"), F.lit(k))
    cluster_size = F.floor((F.lit(p.n_items) - user_cluster + (k - 1)) / k).cast("long")
    in_cluster_pos = _floor_index(F.col("item_u"), cluster_size) * k + user_cluster
    item_pos = F.when(_uniform(p.seed, rid, _S_TASTE) < in_cluster, in_cluster_pos).otherwise(
        _floor_index(F.col("item_u"), p.n_items))
    in_taste = F.pmod(F.col("item_pos"), F.lit(k)) == user_cluster
    value_u = F.floor(_uniform(p.seed, rid, _S_VALUE) * 3)
    # Rating-like 1-5: 3-5 for items of the user's taste, 1-3 otherwise.
    event_value = F.when(in_taste, value_u + 3).otherwise(value_u + 1).cast("double")
    event_u = _uniform(p.seed, rid, _S_EVENT)
    event_type = F.lit(EVENT_TYPES[-1])
    cumulative = [sum(EVENT_TYPE_SHARES[: i + 1]) for i in range(len(EVENT_TYPES) - 1)]
    for name, bound in reversed(list(zip(EVENT_TYPES, cumulative))):
        event_type = F.when(event_u < bound, F.lit(name)).otherwise(event_type)
    # Never before the item exists: uniform between max(span start, creation) and the span end.
    low = F.greatest(F.lit(p.start_ts), _item_creation(p, F.col("item_pos")))
    ts = low + F.floor(_uniform(p.seed, rid, _S_TS) * (F.lit(p.end_ts) + 1 - low)).cast("long")
    return (
        _range(spark, n)
        .select(rid, user_pos.alias("user_pos"), item_u.alias("item_u"))
        .select(rid, "user_pos", item_pos.alias("item_pos"))
        .select(
            _public_id(USER_PREFIX, F.col("user_pos"), p.n_users, p.seed, "users").alias(C.USER_ID),
            _public_id(ITEM_PREFIX, F.col("item_pos"), p.n_items, p.seed, "items").alias(C.ITEM_ID),
            event_type.alias(C.EVENT_TYPE),
            event_value.alias(C.EVENT_VALUE),
            F.least(ts, F.lit(p.end_ts)).alias(C.TIMESTAMP),
        )
    )


def _items(spark: SparkSession, p: _Params) -> DataFrame:
    pos = F.col("id")
    k = p.clusters
    cluster = F.pmod(pos, F.lit(k))
    n_categories = 2 * k
    # Primary category: the cluster's own (c0..c{k-1}) or, rarely, any; secondary: one of two
    # neighbouring clusters' second categories (c{k}..c{2k-1}); third: any category.
    noise = _floor_index(_uniform(p.seed, pos, _S_CAT1), n_categories)
    keep = _uniform(p.seed, pos, _S_CAT1_NOISE) < PRIMARY_CATEGORY_PROBABILITY
    first = F.when(keep, cluster).otherwise(noise)
    second = F.pmod(cluster + _floor_index(_uniform(p.seed, pos, _S_CAT2), 2), F.lit(k)) + k
    third = _floor_index(_uniform(p.seed, pos, _S_CAT3), n_categories)
    count = _floor_index(_uniform(p.seed, pos, _S_CAT_N), 3) + 1
    values = F.array(*(F.concat(F.lit(CATEGORY_PREFIX), v.cast("string"))
                       for v in (first, second, third)))
    chosen = F.array_distinct(F.slice(values, 1, count.cast("int")))
    category = F.array_join(chosen, MULTI_VALUE_SEPARATOR)
    base = 5.0 + 95.0 * _uniform(p.seed, cluster, _S_PRICE_BASE)
    price = F.round(base * (0.5 + _uniform(p.seed, pos, _S_PRICE)), 2)
    return _range(spark, p.n_items).select(
        _public_id(ITEM_PREFIX, pos, p.n_items, p.seed, "items").alias(C.ITEM_ID),
        category.alias(CATEGORY),
        price.cast("double").alias(PRICE),
        _item_creation(p, pos).alias(C.CREATION_TIMESTAMP),
    )


def _users(spark: SparkSession, p: _Params) -> DataFrame:
    pos = F.col("id")
    cluster = F.pmod(pos, F.lit(p.clusters))
    age = F.lit(20) + F.pmod(cluster * 7, F.lit(40)) + _floor_index(_uniform(p.seed, pos, _S_AGE), 15)
    # The most active tenth of users are more often gold or silver.
    heavy = pos < F.lit(max(1, p.n_users // 10))
    tier_u = _uniform(p.seed, pos, _S_TIER)
    gold, silver = F.when(heavy, 0.25).otherwise(0.05), F.when(heavy, 0.60).otherwise(0.25)
    tier = F.when(tier_u < gold, TIERS[2]).when(tier_u < silver, TIERS[1]).otherwise(TIERS[0])
    return _range(spark, p.n_users).select(
        _public_id(USER_PREFIX, pos, p.n_users, p.seed, "users").alias(C.USER_ID),
        age.cast("int").alias(AGE),
        tier.alias(TIER),
    )


# --- writing -------------------------------------------------------------------------------------

SCHEMA_NAMESPACE = "com.amazonaws.personalize.schema"
SCHEMAS_DIR = "schemas"
_SCHEMA_FIELDS = {
    "interactions": ("Interactions", [
        {"name": C.USER_ID, "type": "string"}, {"name": C.ITEM_ID, "type": "string"},
        {"name": C.EVENT_TYPE, "type": "string"}, {"name": C.EVENT_VALUE, "type": ["float", "null"]},
        {"name": C.TIMESTAMP, "type": "long"}]),
    "items": ("Items", [
        {"name": C.ITEM_ID, "type": "string"},
        {"name": CATEGORY, "type": ["string", "null"], "categorical": True},
        {"name": PRICE, "type": ["float", "null"]}, {"name": C.CREATION_TIMESTAMP, "type": "long"}]),
    "users": ("Users", [
        {"name": C.USER_ID, "type": "string"}, {"name": AGE, "type": ["int", "null"]},
        {"name": TIER, "type": ["string", "null"], "categorical": True}]),
}


def personalize_schemas() -> dict[str, dict]:
    """The Personalize Avro schema (as a dict) of each generated dataset, keyed like the datasets."""
    return {kind: {"type": "record", "name": name, "namespace": SCHEMA_NAMESPACE,
                   "fields": [dict(f) for f in fields], "version": "1.0"}
            for kind, (name, fields) in _SCHEMA_FIELDS.items()}


def write_datasets(datasets: dict[str, DataFrame], output: str) -> dict[str, str]:
    """Write each dataset as CSV with a header into ``output/<kind>/`` and its schema JSON into
    ``output/schemas/<kind>.json``.

    Each dataset is written into a temporary sibling folder and renamed into place, so a reader sees
    the previous complete output or the new one; a rerun replaces the previous output.

    Args:
        datasets: ``{"interactions"|"items"|"users": DataFrame}`` (e.g. from :func:`generate_datasets`).
        output: local folder or Hadoop URI (``s3a://...``, ``file:/...``).

    Returns:
        The path of every folder and schema file written, keyed ``<kind>`` and ``schema:<kind>``.

    Raises:
        JobError: a dataset could not be written or renamed into place.
    """
    if not datasets:
        return {}
    spark = next(iter(datasets.values())).sparkSession
    written: dict[str, str] = {}
    schemas = personalize_schemas()
    for kind, df in datasets.items():
        with stage(log, f"generate-{kind}") as info:
            final = fs.join(output, kind)
            tmp = fs.join(output, f"_tmp_{kind}_{uuid.uuid4().hex[:8]}")
            try:
                df.write.mode("overwrite").option("header", True).csv(tmp)
            except Exception as exc:
                fs.delete(spark, tmp)  # leave no half-written sibling behind
                raise JobError(f"could not write the {kind} dataset under {output}: "
                               f"{fs.first_line(exc)}") from exc
            fs.replace(spark, tmp, final)
            # Cheap for generated data: the optimizer prunes the count down to spark.range.
            info["rows"] = df.count()
            info["path"] = final
        written[kind] = final
        if kind in schemas:
            path = fs.join(output, SCHEMAS_DIR, f"{kind}.json")
            fs.write_text_atomic(spark, path, json.dumps(schemas[kind], indent=2) + "\n")
            written[f"schema:{kind}"] = path
    return written
