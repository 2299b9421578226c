"""sar: Smart Adaptive Recommendations (SAR), time-decayed user affinity times item similarity.

As in Microsoft Recommenders' SAR:

* item similarity S from the co-occurrence counts C (``batchrec.recipes.cooccurrence``; pairs
  with fewer than ``min_cointeraction_count`` co-interacting users are dropped):
  ``jaccard`` ``C_ij / (n_i + n_j - C_ij)`` (default), ``lift`` ``C_ij / (n_i n_j)`` or
  ``cooccurrence`` (the raw count ``C_ij``);
* user affinity ``A_ui = sum over the user's events e on item i of weight_e * 2^(-(T_u - t_e) / h)``
  with ``h`` = ``time_decay_half_life_days`` (0 switches the decay off), ``weight_e`` the prepared
  event weight (``[prepare] event_weights``; leave ``[prepare] half_life_days`` unset or the decay
  applies twice) and ``T_u`` the user's latest event. SAR counts ages from one global "now"; from
  the user's own latest event every affinity of the user is multiplied by the same constant, so
  each user's ranking is the same, and users inactive for years (ml-latest-small spans 22 years)
  keep non-zero affinities instead of underflowing to 0 (only popular items left for them);
* scores ``A · S``: ``score_uj = sum_i A_ui S_ij`` over the user's items i
  (``batchrec.scoring.item_based``); seen items are excluded and items no history item is
  similar to are not scored (popular items fill the list).

Only the ``num_neighbours`` most similar items of each item are kept (default 500), so S is sparse
and scoring broadcasts its neighbour lists instead of a dense items x items matrix.

Artifacts: ``item_neighbours`` (rows of S, schema as the sims recipe) and ``user_history``
``[user_idx int, item_idx int, value float]`` (the affinities A).
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from batchrec.columns import ITEM_ID, ITEM_IDX, TIMESTAMP, USER_ID, USER_IDX
from batchrec.dates import SECONDS_PER_DAY
from batchrec.datasets.prepare import WEIGHT
from batchrec.recipes import cooccurrence as cooc

RECIPE = "sar"
SIMILARITIES = (cooc.JACCARD, cooc.LIFT, cooc.COOCCURRENCE)






def train(spark, data, params: dict) -> tuple[dict, dict]:
    """Similarities and affinities: artifacts ``item_neighbours`` and ``user_history``."""
    histories = cooc.user_item_values(data.prepared, data.item_map, binary=True)
    histories, cuts = cooc.apply_caps(histories, cooc.caps_of(params))
    histories = data.keep(histories)
    # cooccurrence with no popularity discount is the raw count, SAR's third option.
    top = cooc.top_similar(histories, cooc.item_counts(histories), params["similarity"],
                           params["num_neighbours"], max(1, params["min_cointeraction_count"]), discount=0.0)
    neighbours = cooc.with_ids(top, data.item_map)
    kept = histories.select(USER_ID, ITEM_IDX)
    affinity = user_affinity(data.events, data.item_map, params["time_decay_half_life_days"])
    history = (affinity.join(kept, [USER_ID, ITEM_IDX], "left_semi")
               .join(data.user_map.select(USER_ID, USER_IDX), USER_ID)
               .select(F.col(USER_IDX).cast("int").alias(USER_IDX), F.col(ITEM_IDX).cast("int").alias(ITEM_IDX),
                       F.col(cooc.VALUE).cast("float").alias(cooc.VALUE)))
    return {cooc.ITEM_NEIGHBOURS: neighbours, cooc.USER_HISTORY: history}, {"caps": cuts}


def user_affinity(events: DataFrame, item_map: DataFrame, half_life_days: float) -> DataFrame:
    """Time-decayed affinity per (user, item), ages from each user's latest event.

    Returns:
        DataFrame[USER_ID, item_idx, value double].
    """
    weight = F.col(WEIGHT)
    if half_life_days > 0:
        latest = F.max(TIMESTAMP).over(Window.partitionBy(USER_ID))
        age_days = (latest - F.col(TIMESTAMP)) / F.lit(SECONDS_PER_DAY)
        weight = weight * F.pow(F.lit(2.0), -age_days / F.lit(float(half_life_days)))
    return (events.join(item_map.select(ITEM_ID, ITEM_IDX), ITEM_ID)
            .select(USER_ID, ITEM_IDX, weight.alias("_weight"))
            .groupBy(USER_ID, ITEM_IDX).agg(F.sum("_weight").cast("double").alias(cooc.VALUE)))
