"""sims: related items by item-item co-occurrence, as Personalize's SIMS.

Two items are related when the same users interacted with both. With ``C`` the number of users
who interacted with items i and j (after the caps below), ``n_i`` and ``n_j`` each item's number of
users and ``p`` = ``popularity_discount_factor`` (default 0.5), the default similarity is::

    score(i, j) = C / (n_i * n_j) ** p

* ``p = 0`` scores the raw co-count: the most popular items come first whatever their
  correlation (Personalize: "a value of 0 makes the most popular items appear");
* ``p = 1`` is the lift ``C / (n_i n_j)``: items with co-interactions come first regardless of
  their popularity;
* ``p = 0.5`` (the default) is the cosine of the items' binary user vectors.

Pairs with fewer than ``min_cointeraction_count`` (default 3: "three or more users who interacted
with both items") co-interacting users are dropped. ``similarity`` offers other measures instead
(``batchrec.recipes.cooccurrence``): ``cosine`` over the prepared confidences, ``jaccard``
``C / (n_i + n_j - C)``, ``lift``, and ``llr`` (Dunning's log-likelihood ratio, positive
associations only); the popularity discount applies to ``cooccurrence`` only.

Featurization caps (Personalize's names and defaults): users below the 0.5th percentile of history
length are dropped and those above the 99.5th keep their most recent items; items below the 1st
percentile of user counts are dropped. ``max_item_interaction_count_percentile`` (off by default:
1.0) keeps only the most recent users of items above that percentile.

Artifact ``item_neighbours``: ``[ITEM_ID string, rank int, NEIGHBOUR_ID string, score double]``,
the ``num_neighbours`` best neighbours of each item, rank 1 = best, ordered by score descending
then NEIGHBOUR_ID ascending; an item is never its own neighbour. Items without any neighbour (too
few interactions, or unknown) get popular items at inference (``batchrec.scoring.related``).
"""

from __future__ import annotations

from batchrec.recipes import cooccurrence as cooc

RECIPE = "sims"






def train(spark, data, params: dict) -> tuple[dict, dict]:
    """Co-occurrence neighbours of every item: artifact ``item_neighbours``."""
    kind = params["similarity"]
    histories = cooc.user_item_values(data.prepared, data.item_map, binary=kind != cooc.COSINE)
    histories, cuts = cooc.apply_caps(histories, cooc.caps_of(params))
    histories = data.keep(histories)
    top = cooc.top_similar(histories, cooc.item_counts(histories), kind, params["num_neighbours"],
                           max(1, params["min_cointeraction_count"]), params["popularity_discount_factor"])
    return {cooc.ITEM_NEIGHBOURS: cooc.with_ids(top, data.item_map)}, {"caps": cuts}
