"""User segments from a user-personalization (ALS) model: the users most likely to interact with an
item (item-affinity) or with the items an attribute query selects (item-attribute-affinity).

A segment is a set of items (one for item-affinity) and a user's segment score is an aggregate of
the user's ALS scores over those items (see :data:`AGGREGATIONS`). Segments are never computed as a
users x items (or users x segments) table in Spark. The query side (at most the catalogue) is
collected once on the driver and broadcast; the user factors are scanned partition by partition with
``mapInArrow``, one BLAS product per block of users, and each partition keeps only a bounded number
of candidates per segment. Two plans, chosen by the segment size N and the number of segments:

* one pass: each partition keeps a running top N per segment. A block first drops everything
  below its own N-th best score per segment (``np.partition``) and below the partition's running
  N-th best; the survivors are buffered and, when the buffer grows past
  twice its bound, sorted (Arrow, by segment, score desc, USER_ID asc) and cut back to N per
  segment. Segments are processed in chunks of ``max_candidates // N`` (one scan each), so a
  partition never holds more than about ``2 * max_candidates`` candidates.
* threshold (N above ``max_candidates``, up to the millions, or when it needs fewer scans of the
  users than one pass would; see :func:`plan_scans`): the exact N-th best score of each segment
  is found first by a radix select over the scores' sortable 32-bit keys (three histogram passes of
  11, 11 and 10 bits; each partition sends at most ``segments x 2048`` counts), then a last pass
  streams out every user scoring at least that threshold (less a relative margin of
  :data:`THRESHOLD_MARGIN`, so that a last-bit difference in a score between passes does not drop
  a user). Memory per partition is independent of N.

Either way the candidates (at most partitions x N per segment) are merged by a window
``row_number`` per segment and cut at N. Order: score descending, then USER_ID ascending (Arrow and
Spark both compare strings by code point, so the per-partition and final cuts agree). Scores are
float32 dot products reported as double; ``-0.0`` is normalized to ``0.0`` and a NaN score makes
the (user, segment) pair ineligible. N larger than the eligible users returns every eligible user
once.

Eligibility masks, applied before the cut: users who interacted with a segment's items
(``exclude``, for "new buyers" campaigns), and allow/deny lists of users, global (``[USER_ID]``)
or per segment (``[segment_id, USER_ID]``), where UserID filters plug in.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Iterator, Mapping, Optional, Sequence, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, Window, functions as F

from batchrec.columns import ITEM_ID, ITEM_IDX, USER_ID, USER_IDX
from batchrec.errors import JobError, UsageError
from batchrec.registry import ITEM_FACTORS, ITEM_MAP, USER_FACTORS, USER_MAP
from batchrec.scoring import topk
from batchrec.scoring.attribute_query import SEGMENT_ID, AttributeQuery, matching_items, parse_attribute_query

log = logging.getLogger(__name__)

RANK = "rank"
SCORE = "score"
ITEMS = "items"
FEATURES = topk.FEATURES
OUTPUT_COLUMNS = (SEGMENT_ID, RANK, USER_ID, SCORE)
OUTPUT_DDL = f"{SEGMENT_ID} string, {RANK} int, {USER_ID} string, {SCORE} double"
CANDIDATE_DDL = f"{SEGMENT_ID} string, {USER_ID} string, {SCORE} double"

DEFAULT_NUM_RESULTS = 25  # Personalize's default segment size
MAX_NUM_RESULTS = 5_000_000  # Personalize's limit of users per segment

AGG_MEAN = "mean"
AGG_MAX = "max"
# How a user's ALS scores over a segment's items make the segment score (item-attribute-affinity):
# * mean (default): the mean score over the items, i.e. the dot product with the items' mean
#   vector. ALS scores estimate the preference for each item, so the mean ranks users by the
#   expected share of the set they would take to, and a user who likes many items of the set
#   beats one who likes a single item. One vector per segment: as cheap as item-affinity.
# * max: the best single item of the set (every item's score is computed, then reduced); it favours
#   users devoted to a few items of a broad set.
# Measured on MovieLens (bench/bench_segment.py: 13 genre queries, 80/20 per-user hold-out,
# segments of 25 of 610 users): the mean's users rated 7.2x as many hold-out movies of the genre as
# an average user, the max's 3.8x (most active users: 6.8x); with exclude_interacted both find
# new-to-genre raters at about 2.4-2.7x the rate of a random new-to-genre user.
AGGREGATIONS = (AGG_MEAN, AGG_MAX)
DEFAULT_AGGREGATION = AGG_MEAN

DEFAULT_USERS_PER_BATCH = topk.DEFAULT_USERS_PER_BATCH
MAX_BLOCK_CELLS = topk.MAX_BLOCK_CELLS
# Candidates (segment, user, score) one partition keeps per scan in the one-pass plan (it buffers
# up to twice as many between compactions: about 2M rows, some 60 MB with the user IDs).
MAX_CANDIDATES = 1 << 20
PLAN_ONE_PASS = "one-pass"
PLAN_THRESHOLD = "threshold"
# Below this many buffered rows a compaction is not worth its sort.
MIN_COMPACT_ROWS = 1 << 16
# Radix select: bits of the sortable score key resolved by each histogram pass (sum 32).
RADIX_BITS = (11, 11, 10)
# Segments per histogram scan: bounds each partition's counts to 512 x 2048 integers (8 MB).
MAX_HISTOGRAM_SEGMENTS = 512
# The threshold plan keeps users scoring at least t - THRESHOLD_MARGIN * |t| - MARGIN_FLOOR.
THRESHOLD_MARGIN = 1e-4
MARGIN_FLOOR = 1e-7

_Q = "_q"
_BUCKET = "_bucket"
_COUNT = "_count"
_EXCLUDED = "_excluded"
_ALLOWED = "_allowed"
_SIGN = np.uint32(0x80000000)

Artifacts = Mapping[str, DataFrame]
# A user mask: one frame or several (see affinity_segments).
Masks = Union[None, DataFrame, Sequence[DataFrame]]


# --- sizes ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SegmentSize:
    """Users per segment: a fixed ``num_results`` or a ``fraction`` of the model's users."""

    num_results: Optional[int] = DEFAULT_NUM_RESULTS
    fraction: Optional[float] = None

    def users(self, n_users: int) -> int:
        """N for a model with ``n_users`` users: ``ceil(fraction * n_users)`` (at least 1, at most
        :data:`MAX_NUM_RESULTS`), else ``num_results``."""
        if self.fraction is None:
            return int(self.num_results)
        # round() first: 0.01 * 100000 is 1000.0000000000001 in binary floating point.
        wanted = max(1, math.ceil(round(self.fraction * n_users, 6)))
        if wanted > MAX_NUM_RESULTS:
            log.warning("fraction %s of %d users is %d users; capped at %d users per segment",
                        self.fraction, n_users, wanted, MAX_NUM_RESULTS)
        return min(wanted, MAX_NUM_RESULTS)


def segment_size(num_results: Optional[int] = None, fraction: Optional[float] = None) -> SegmentSize:
    """A checked :class:`SegmentSize`; neither given means :data:`DEFAULT_NUM_RESULTS`.

    Raises:
        UsageError: both given, ``num_results`` not an integer in 1..5,000,000, or ``fraction`` not
            a number in (0, 1].
    """
    if num_results is not None and fraction is not None:
        raise UsageError("num_results and fraction both given; expected one segment size (--num-results N "
                         "or --fraction P)")
    if fraction is not None:
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
            raise UsageError(f"fraction = {fraction!r}; expected a share of the users in (0, 1], e.g. 0.01")
        return SegmentSize(None, float(fraction))
    if num_results is None:
        return SegmentSize(DEFAULT_NUM_RESULTS)
    if isinstance(num_results, bool) or not isinstance(num_results, int) \
            or not 1 <= num_results <= MAX_NUM_RESULTS:
        raise UsageError(f"num_results = {num_results!r}; expected an integer from 1 to {MAX_NUM_RESULTS}")
    return SegmentSize(num_results)


# --- public entry points -------------------------------------------------------------------------

def item_affinity(
    artifacts: Artifacts,
    queries: Optional[DataFrame] = None,
    size: SegmentSize = SegmentSize(),
    exclude: Optional[DataFrame] = None,
    allow_users: Masks = None,
    deny_users: Masks = None,
    allow_segments: Optional[Sequence[str]] = None,
    users_per_batch: int = DEFAULT_USERS_PER_BATCH,
    max_candidates: int = MAX_CANDIDATES,
) -> DataFrame:
    """The users most likely to interact with each query item.

    Args:
        artifacts: a user-personalization solution version's artifacts (``user_factors``,
            ``item_factors``, ``user_map``, ``item_map``).
        queries: ``[ITEM_ID]`` (the segment_id is the item ID) or ``[segment_id, ITEM_ID]``;
            None: one segment per item of the model.
        size: users per segment (:func:`segment_size`).
        exclude: ``[USER_ID, ITEM_ID]`` interactions; users who interacted with a segment's item
            are left out of that segment (``--exclude-interacted``).
        allow_users, deny_users, allow_segments: see :func:`affinity_segments`.
        users_per_batch: users per numpy block.
        max_candidates: per-partition candidate bound (chooses the plan; see the module docstring).

    Returns:
        ``[segment_id, rank, USER_ID, score]``: rank 1..N per segment by score desc, then USER_ID.
        A segment whose item is unknown to the model has no row (see :func:`segment_item_counts`).
    """
    return affinity_segments(artifacts, item_segments(artifacts, queries), size, exclude, allow_users,
                             deny_users, allow_segments, AGG_MEAN, users_per_batch, max_candidates)


def item_attribute_affinity(
    artifacts: Artifacts,
    items: DataFrame,
    queries: Sequence[Union[str, AttributeQuery]],
    size: SegmentSize = SegmentSize(),
    exclude: Optional[DataFrame] = None,
    allow_users: Masks = None,
    deny_users: Masks = None,
    allow_segments: Optional[Sequence[str]] = None,
    aggregation: str = DEFAULT_AGGREGATION,
    users_per_batch: int = DEFAULT_USERS_PER_BATCH,
    max_candidates: int = MAX_CANDIDATES,
) -> DataFrame:
    """The users most likely to interact with the items each attribute query selects.

    Args:
        artifacts: as :func:`item_affinity`.
        items: the Items dataset (``ITEM_ID`` and the attribute columns the queries name).
        queries: query texts (``ITEMS.genres = "Comedy" AND ...``) or parsed queries; the
            segment_id of each is :attr:`AttributeQuery.segment_id`.
        size, allow_users, deny_users, allow_segments, users_per_batch, max_candidates: as
            :func:`item_affinity`.
        exclude: ``[USER_ID, ITEM_ID]``; users who interacted with any selected item are left out.
        aggregation: how item scores make the segment score: :data:`AGG_MEAN` (default: the mean
            score over the items, which scored best on MovieLens genre queries) or :data:`AGG_MAX`;
            why and the measurements: see :data:`AGGREGATIONS`.

    Returns:
        ``[segment_id, rank, USER_ID, score]``; a query matching no item of the model has no row.

    Raises:
        AttributeQueryError: a query does not parse or names a field ``items`` lacks.
    """
    parsed = [q if isinstance(q, AttributeQuery) else parse_attribute_query(q) for q in queries]
    return affinity_segments(artifacts, matching_items(items, parsed), size, exclude, allow_users,
                             deny_users, allow_segments, aggregation, users_per_batch, max_candidates)


def item_segments(artifacts: Artifacts, queries: Optional[DataFrame] = None) -> DataFrame:
    """``[segment_id, ITEM_ID]`` for item-affinity queries (see :func:`item_affinity`)."""
    if queries is None:
        known = artifacts[ITEM_MAP].join(artifacts[ITEM_FACTORS].select(ITEM_IDX), ITEM_IDX, "left_semi")
        return known.select(F.col(ITEM_ID).alias(SEGMENT_ID), ITEM_ID)
    if ITEM_ID not in queries.columns:
        raise UsageError(f"item-affinity queries have columns {queries.columns}; expected {ITEM_ID} "
                         f"(and optionally {SEGMENT_ID})")
    segment = F.col(SEGMENT_ID) if SEGMENT_ID in queries.columns else F.col(ITEM_ID)
    return queries.select(segment.alias(SEGMENT_ID), ITEM_ID).where(F.col(ITEM_ID).isNotNull()).distinct()


def segment_item_counts(artifacts: Artifacts, segment_items: DataFrame) -> DataFrame:
    """``[segment_id, items long]``: how many of each segment's items the model can score.

    0 marks a segment that will be empty: an item unknown to the model (not trained on), or an
    attribute query whose items all lack factors. Segments absent from ``segment_items`` (an
    attribute query matching no item at all) are absent here too.
    """
    known = artifacts[ITEM_MAP].join(artifacts[ITEM_FACTORS].select(ITEM_IDX), ITEM_IDX, "left_semi")
    flagged = segment_items.join(known.select(ITEM_ID, F.lit(1).alias("_known")), ITEM_ID, "left")
    return flagged.groupBy(SEGMENT_ID).agg(F.count("_known").alias(ITEMS))


def affinity_segments(
    artifacts: Artifacts,
    segment_items: DataFrame,
    size: SegmentSize = SegmentSize(),
    exclude: Optional[DataFrame] = None,
    allow_users: Masks = None,
    deny_users: Masks = None,
    allow_segments: Optional[Sequence[str]] = None,
    aggregation: str = DEFAULT_AGGREGATION,
    users_per_batch: int = DEFAULT_USERS_PER_BATCH,
    max_candidates: int = MAX_CANDIDATES,
) -> DataFrame:
    """Top users per segment of items; the kernel behind both recipes.

    Spark jobs run when called: the segments' vectors are collected, the users counted (for a
    ``fraction``), and in the threshold plan the three histogram passes run; the returned frame
    then scans the users once per chunk of segments. The users (factors joined with their IDs and
    masks) are read on every scan, so pass persisted artifacts when more than one scan is planned
    (:func:`plan_scans`).

    Args:
        artifacts: as :func:`item_affinity`.
        segment_items: ``[segment_id, ITEM_ID]``, the items of each segment (bounded by the number
            of segments times the catalogue; collected on the driver with their factors).
        size: users per segment; a ``fraction`` counts the model's users (one count of
            ``user_factors``).
        exclude: ``[USER_ID, ITEM_ID]``; a user is left out of every segment containing an item
            they interacted with.
        allow_users: ``[USER_ID]``: only these users are eligible; ``[segment_id, USER_ID]``: only
            a segment's own rows are eligible for it (for the segments in ``allow_segments``, all
            by default: a segment without rows is then empty). A sequence of frames applies each
            (at most one per-segment frame).
        deny_users: ``[USER_ID]`` never eligible; ``[segment_id, USER_ID]`` not for that segment; or
            a sequence of such frames.
        allow_segments: the segments a per-segment ``allow_users`` restricts.
        aggregation: :data:`AGG_MEAN` or :data:`AGG_MAX`.
        users_per_batch: users per numpy block (fewer when a block would exceed 16M scores).
        max_candidates: per-partition candidate bound; N above it uses the threshold plan (0: always).

    Returns:
        ``[segment_id string, rank int, USER_ID string, score double]``.

    Raises:
        UsageError: an unknown aggregation or a bad mask frame.
        JobError: an artifact is missing or the factors are inconsistent.
    """
    if aggregation not in AGGREGATIONS:
        raise UsageError(f"aggregation {aggregation!r}; expected one of {', '.join(AGGREGATIONS)}")
    if not isinstance(size, SegmentSize):
        raise TypeError(f"size must be a SegmentSize, got {type(size).__name__}")
    if users_per_batch < 1 or max_candidates < 0:
        raise ValueError("users_per_batch must be at least 1 and max_candidates at least 0")
    _check_artifacts(artifacts)
    _check_columns(segment_items, (SEGMENT_ID, ITEM_ID), "segment_items")
    allow_users, deny_users = _frames(allow_users), _frames(deny_users)
    if exclude is not None:
        _check_columns(exclude, (USER_ID, ITEM_ID), "exclude")
    for name, frames in (("allow_users", allow_users), ("deny_users", deny_users)):
        for frame in frames:
            _check_columns(frame, (USER_ID,), name)
    if sum(SEGMENT_ID in frame.columns for frame in allow_users) > 1:
        raise UsageError("allow_users: at most one per-segment frame; union them")
    queries = collect_queries(artifacts, segment_items, aggregation)
    if queries.size == 0:
        return segment_items.sparkSession.createDataFrame([], OUTPUT_DDL)
    users = model_users(artifacts)
    n = size.users(users.count()) if size.fraction is not None else size.users(0)
    users, restricted = _with_masks(users, queries, segment_items, exclude, allow_users, deny_users,
                                    allow_segments)
    candidates = segment_candidates(users, queries, n, restricted, users_per_batch, max_candidates)
    order = Window.partitionBy(SEGMENT_ID).orderBy(F.col(SCORE).desc(), F.col(USER_ID).asc())
    return (candidates.withColumn(RANK, F.row_number().over(order)).where(F.col(RANK) <= n)
            .select(SEGMENT_ID, F.col(RANK).cast("int").alias(RANK), USER_ID, SCORE))


# --- the query side ------------------------------------------------------------------------------

@dataclass(frozen=True)
class QueryMatrix:
    """Segments on the driver, in segment_id order.

    ``vectors`` holds one row per segment (``starts`` is ``0..q-1``) or, for :data:`AGG_MAX`, the
    rows of every segment's items, segment ``s`` owning rows ``starts[s]`` up to ``starts[s+1]``.
    """

    segment_ids: np.ndarray  # object (str), sorted
    vectors: np.ndarray  # float32 (rows, rank)
    starts: np.ndarray  # int64 (q,)
    grouped: bool  # True: reduce each segment's rows with max

    @property
    def size(self) -> int:
        """Number of segments."""
        return int(len(self.segment_ids))

    def rows(self, lo: int, hi: int) -> tuple[int, int]:
        """The ``vectors`` rows of segments ``lo`` to ``hi - 1``."""
        end = int(self.starts[hi]) if hi < self.size else int(self.vectors.shape[0])
        return int(self.starts[lo]), end


def collect_queries(artifacts: Artifacts, segment_items: DataFrame,
                    aggregation: str = AGG_MEAN) -> QueryMatrix:
    """The segments' vectors: the mean item vector per segment, or every item's for :data:`AGG_MAX`.

    Items unknown to the model are ignored; a segment left without items is dropped. The mean is
    taken in float64 and stored as float32.
    """
    members = segment_items.select(SEGMENT_ID, ITEM_ID).where(
        F.col(SEGMENT_ID).isNotNull() & F.col(ITEM_ID).isNotNull()).distinct()
    known = (artifacts[ITEM_FACTORS].select(ITEM_IDX, FEATURES)
             .join(artifacts[ITEM_MAP].select(ITEM_ID, ITEM_IDX), ITEM_IDX)
             .join(members.select(ITEM_ID).distinct(), ITEM_ID, "left_semi"))
    matrix = topk.collect_item_matrix(known)
    # Through Arrow, as topk collects the item matrix: up to segments x catalogue rows.
    pairs = topk._to_pandas(members.join(known.select(ITEM_ID), ITEM_ID, "left_semi"))
    rank = matrix.vectors.shape[1]
    if not len(pairs):
        return QueryMatrix(np.array([], dtype=object), np.zeros((0, rank), np.float32),
                           np.zeros(0, np.int64), False)
    import pandas as pd

    pairs["_pos"] = pd.Index(matrix.item_ids).get_indexer(pairs[ITEM_ID])
    pairs = pairs.sort_values([SEGMENT_ID, "_pos"], kind="stable")
    segment_ids = pairs[SEGMENT_ID].to_numpy(dtype=object)
    positions = pairs["_pos"].to_numpy(dtype=np.int64)
    boundaries = np.flatnonzero(np.r_[True, segment_ids[1:] != segment_ids[:-1]])
    ids = segment_ids[boundaries]
    if aggregation == AGG_MAX:
        vectors = matrix.vectors[positions]
        return QueryMatrix(ids, np.ascontiguousarray(vectors), boundaries.astype(np.int64), True)
    if len(positions) == len(ids):  # one item per segment: its own vector, bit for bit
        vectors = matrix.vectors[positions]
    else:
        sums = np.add.reduceat(matrix.vectors[positions].astype(np.float64), boundaries, axis=0)
        counts = np.diff(np.r_[boundaries, len(positions)])
        vectors = (sums / counts[:, None]).astype(np.float32)
    return QueryMatrix(ids, np.ascontiguousarray(vectors), np.arange(len(ids), dtype=np.int64), False)


# --- the user side -------------------------------------------------------------------------------

def model_users(artifacts: Artifacts) -> DataFrame:
    """``[USER_ID, features]`` of every user with factors and an ID."""
    return artifacts[USER_FACTORS].select(USER_IDX, FEATURES).join(
        artifacts[USER_MAP].select(USER_ID, USER_IDX), USER_IDX).select(USER_ID, FEATURES)


def _with_masks(users: DataFrame, queries: QueryMatrix, segment_items: DataFrame, exclude, allow_users,
                deny_users, allow_segments) -> tuple[DataFrame, np.ndarray]:
    """``users`` restricted by the global masks, with per-user ``_excluded``/``_allowed`` segment
    index arrays (into ``queries.segment_ids``) for the per-segment ones, and which segments are
    restricted to their allow lists."""
    spark = users.sparkSession
    index = spark.createDataFrame([(i, s) for i, s in enumerate(queries.segment_ids.tolist())],
                                  f"{_Q} int, {SEGMENT_ID} string")
    excluded, allowed = [], None
    if exclude is not None:
        touched = exclude.select(USER_ID, ITEM_ID).join(segment_items.select(SEGMENT_ID, ITEM_ID), ITEM_ID)
        excluded.append(touched.join(F.broadcast(index), SEGMENT_ID).select(USER_ID, _Q))
    for name, frame in [("allow_users", f) for f in allow_users] + [("deny_users", f) for f in deny_users]:
        if SEGMENT_ID not in frame.columns:
            users = users.join(frame.select(USER_ID).distinct(), USER_ID,
                               "left_semi" if name == "allow_users" else "left_anti")
            continue
        pairs = frame.select(SEGMENT_ID, USER_ID).join(F.broadcast(index), SEGMENT_ID).select(USER_ID, _Q)
        if name == "deny_users":
            excluded.append(pairs)
        else:
            allowed = pairs
    restricted = np.zeros(queries.size, dtype=bool)
    if allowed is not None:
        wanted = set(queries.segment_ids.tolist() if allow_segments is None else allow_segments)
        restricted = np.array([s in wanted for s in queries.segment_ids], dtype=bool)
        users = users.join(allowed.groupBy(USER_ID).agg(F.collect_set(_Q).alias(_ALLOWED)), USER_ID, "left")
    if excluded:
        union = excluded[0]
        for other in excluded[1:]:
            union = union.unionByName(other)
        users = users.join(union.groupBy(USER_ID).agg(F.collect_set(_Q).alias(_EXCLUDED)), USER_ID, "left")
    return users, restricted


def _frames(given: Union[None, DataFrame, Sequence[DataFrame]]) -> list[DataFrame]:
    """A mask argument as a list of frames (None: none)."""
    if given is None:
        return []
    return [given] if isinstance(given, DataFrame) else list(given)


def _check_columns(frame: DataFrame, wanted: Sequence[str], name: str) -> None:
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        optional = f" (and optionally {SEGMENT_ID})" if name in ("allow_users", "deny_users") else ""
        raise UsageError(f"{name} has columns {frame.columns}; expected {', '.join(wanted)}{optional}")


def _check_artifacts(artifacts: Artifacts) -> None:
    missing = [a for a in (USER_FACTORS, ITEM_FACTORS, USER_MAP, ITEM_MAP) if a not in artifacts]
    if missing:
        raise JobError(f"the solution version has no {', '.join(missing)}; user segments need a "
                       f"user-personalization model (user and item factors with their ID maps)")


# --- scanning ------------------------------------------------------------------------------------

def segment_candidates(users: DataFrame, queries: QueryMatrix, n: int,
                       restricted: Optional[np.ndarray] = None,
                       users_per_batch: int = DEFAULT_USERS_PER_BATCH,
                       max_candidates: int = MAX_CANDIDATES,
                       min_compact_rows: int = MIN_COMPACT_ROWS) -> DataFrame:
    """``[segment_id, USER_ID, score]``: a superset of each segment's top ``n`` eligible users,
    at most (partitions x n) per segment plus ties at the threshold.

    Args:
        users: ``[USER_ID, features]`` with optional ``_excluded``/``_allowed`` arrays of segment
            indexes (see :func:`affinity_segments`).
        queries: the segments (:func:`collect_queries`), at least one.
        n: users per segment.
        restricted: bool per segment: only users whose ``_allowed`` lists it are eligible.
        users_per_batch, max_candidates: see :func:`affinity_segments`.
        min_compact_rows: buffered candidates below which a partition never compacts.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if queries.size == 0:
        raise ValueError("no segment to score")
    restricted = np.zeros(queries.size, dtype=bool) if restricted is None else np.asarray(restricted, bool)
    columns = [USER_ID, FEATURES] + [c for c in (_EXCLUDED, _ALLOWED) if c in users.columns]
    users = users.select(*columns)
    payload = users.sparkSession.sparkContext.broadcast(_Payload(queries, restricted))
    if plan_scans(queries.size, n, max_candidates)[0] == PLAN_ONE_PASS:
        per_chunk = max(1, max_candidates // n)
        parts = [_top_scan(users, payload, lo, min(lo + per_chunk, queries.size), n, users_per_batch,
                           min_compact_rows) for lo in range(0, queries.size, per_chunk)]
    else:
        per_chunk = MAX_HISTOGRAM_SEGMENTS
        parts = [_threshold_scan(users, payload, lo, min(lo + per_chunk, queries.size), n, users_per_batch)
                 for lo in range(0, queries.size, per_chunk)]
    out = parts[0]
    for part in parts[1:]:
        out = out.unionByName(part)
    return out


def plan_scans(segments: int, n: int, max_candidates: int = MAX_CANDIDATES) -> tuple[str, int]:
    """The plan with fewer scans of the users, and its number of scans.

    One pass needs a scan per chunk of ``max_candidates // n`` segments (impossible when
    ``n > max_candidates``); the threshold plan needs four scans per chunk of
    :data:`MAX_HISTOGRAM_SEGMENTS`. E.g. 500 segments of 1,000 users: one scan, one pass; 500
    segments of 100,000 users: 50 scans in one pass against 4 with the threshold plan.
    """
    threshold = (len(RADIX_BITS) + 1) * math.ceil(segments / MAX_HISTOGRAM_SEGMENTS)
    if n > max_candidates:
        return PLAN_THRESHOLD, threshold
    one_pass = math.ceil(segments / max(1, max_candidates // n))
    return (PLAN_ONE_PASS, one_pass) if one_pass <= threshold else (PLAN_THRESHOLD, threshold)


@dataclass(frozen=True)
class _Payload:
    """What the executors receive (one broadcast)."""

    queries: QueryMatrix
    restricted: np.ndarray  # bool (q,): segments limited to their allow lists

    @property
    def segment_ids(self) -> pa.Array:
        return pa.array(self.queries.segment_ids.tolist(), type=pa.string())


def _rows_per_block(queries: QueryMatrix, lo: int, hi: int, users_per_batch: int) -> int:
    start, end = queries.rows(lo, hi)
    return max(1, min(users_per_batch, MAX_BLOCK_CELLS // max(end - start, 1)))


def _blocks(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        for start in range(0, batch.num_rows, rows):
            block = batch.slice(start, rows)
            if block.num_rows:
                yield block


def _block_scores(block: pa.RecordBatch, payload: _Payload, lo: int, hi: int) -> np.ndarray:
    """Segment scores (b, hi - lo) float32 of the block's users; -inf where not eligible."""
    q = payload.queries
    names = block.schema.names
    b = block.num_rows
    start, end = q.rows(lo, hi)
    vectors = q.vectors[start:end]
    flat = block.column(names.index(FEATURES)).flatten().to_numpy(zero_copy_only=False)
    if flat.size != b * vectors.shape[1]:
        raise ValueError(f"user_factors: vectors of a block do not all have rank {vectors.shape[1]}")
    scores = flat.reshape(b, vectors.shape[1]).astype(np.float32, copy=False) @ vectors.T
    if q.grouped:
        scores = np.maximum.reduceat(scores, q.starts[lo:hi] - start, axis=1)
    scores += np.float32(0.0)  # -0.0 + 0.0 is +0.0: one zero for the sort and the radix keys
    scores[np.isnan(scores)] = -np.inf
    if _EXCLUDED in names:
        rows, cols = _pairs(block.column(names.index(_EXCLUDED)), lo, hi)
        scores[rows, cols] = -np.inf
    restricted = payload.restricted[lo:hi]
    if restricted.any():
        allowed = np.zeros(scores.shape, dtype=bool)
        allowed[:, ~restricted] = True
        if _ALLOWED in names:
            rows, cols = _pairs(block.column(names.index(_ALLOWED)), lo, hi)
            allowed[rows, cols] = True
        scores[~allowed] = -np.inf
    return scores


def _pairs(lists: pa.Array, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, segment - lo) of the segment indexes in ``lists`` that fall in [lo, hi)."""
    rows = pc.list_parent_indices(lists).to_numpy()
    segs = lists.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    ok = (segs >= lo) & (segs < hi)
    return rows[ok], segs[ok] - lo


def _top_scan(users: DataFrame, payload, lo: int, hi: int, n: int, users_per_batch: int,
              min_compact_rows: int = MIN_COMPACT_ROWS) -> DataFrame:
    """One pass: a bounded running top ``n`` per segment in each partition."""
    rows = _rows_per_block(payload.value.queries, lo, hi, users_per_batch)

    def scan(batches):
        p = payload.value
        top = RunningTop(n, hi - lo, min_compact_rows)
        for block in _blocks(batches, rows):
            top.add(_block_scores(block, p, lo, hi), block.column(block.schema.names.index(USER_ID)))
        yield from top.batches(p.segment_ids, lo)

    return users.mapInArrow(scan, CANDIDATE_DDL)


class RunningTop:
    """The best ``n`` (score desc, USER_ID asc) of each of ``q`` segments among the blocks added.

    Memory stays below about ``max(2 * n * q, min_compact_rows)`` candidates plus one block's.
    """

    def __init__(self, n: int, q: int, min_compact_rows: int = MIN_COMPACT_ROWS):
        self.n, self.q = n, q
        self.floor = np.full(q, -np.inf, dtype=np.float32)  # n-th best so far, once n are held
        self.parts: list[tuple[np.ndarray, np.ndarray, pa.Array]] = []
        self.size = 0
        self.compactions = 0
        self.limit = max(2 * n * q, min_compact_rows)

    def add(self, scores: np.ndarray, user_ids: pa.Array) -> None:
        """Offer a block: ``scores`` (b, q) float32 (-inf: not eligible) of users ``user_ids``."""
        b = scores.shape[0]
        floor = self.floor
        if b > self.n:  # nothing below the block's own n-th best can make the top n
            floor = np.maximum(floor, np.partition(scores, b - self.n, axis=0)[b - self.n])
        # >= keeps ties with the floor: USER_ID decides them at the next compaction.
        rows, cols = np.nonzero((scores >= floor) & (scores > -np.inf))
        if rows.size:
            self.parts.append((cols.astype(np.int32), scores[rows, cols], user_ids.take(pa.array(rows))))
            self.size += rows.size
            if self.size > self.limit:
                self.compact()

    def compact(self) -> None:
        """Cut the buffer back to the best n per segment and raise the floors."""
        if not self.parts:
            return
        self.compactions += 1
        table = pa.table({"q": np.concatenate([p[0] for p in self.parts]),
                          "s": np.concatenate([p[1] for p in self.parts]),
                          "u": pa.concat_arrays([p[2] for p in self.parts])})
        order = pc.sort_indices(table, sort_keys=[("q", "ascending"), ("s", "descending"),
                                                  ("u", "ascending")])
        segs = table.column("q").to_numpy()[order.to_numpy()]
        rank = np.arange(len(segs)) - np.searchsorted(segs, segs, side="left")
        kept = table.take(order.filter(pa.array(rank < self.n)))
        segs = kept.column("q").to_numpy()
        scores = kept.column("s").to_numpy()
        self.parts = [(segs, scores, kept.column("u").combine_chunks())]
        self.size = len(segs)
        counts = np.bincount(segs, minlength=self.q)
        last = np.searchsorted(segs, np.arange(self.q), side="right") - 1
        full = counts >= self.n
        self.floor[full] = scores[last[full]]

    def batches(self, segment_ids: pa.Array, lo: int) -> Iterator[pa.RecordBatch]:
        """The kept candidates as ``[segment_id, USER_ID, score]`` (segment ``j`` is ``lo + j``)."""
        self.compact()
        if self.size:
            segs, scores, users = self.parts[0]
            yield _candidate_batch(segment_ids, segs + lo, users, scores)


def _candidate_batch(segment_ids: pa.Array, segs: np.ndarray, users: pa.Array, scores: np.ndarray):
    return pa.RecordBatch.from_arrays(
        [segment_ids.take(pa.array(segs.astype(np.int64))), users, pa.array(scores.astype(np.float64))],
        names=[SEGMENT_ID, USER_ID, SCORE])


# --- the threshold plan (very large N) -----------------------------------------------------------

def sortable_keys(scores: np.ndarray) -> np.ndarray:
    """uint32 keys ordered as the float32 scores: flip all bits of negatives, the sign of the rest."""
    bits = np.ascontiguousarray(scores, dtype=np.float32).view(np.uint32)
    return np.where(bits & _SIGN, ~bits, bits | _SIGN)


def key_to_score(key: int) -> float:
    """The float32 value of a :func:`sortable_keys` key."""
    key = np.uint32(key)
    bits = key & ~_SIGN if key & _SIGN else ~key
    return float(np.array([bits], dtype=np.uint32).view(np.float32)[0])


def _threshold_scan(users: DataFrame, payload, lo: int, hi: int, n: int, users_per_batch: int) -> DataFrame:
    """Radix-select each segment's n-th best score, then stream the users at or above it."""
    q = hi - lo
    rows = _rows_per_block(payload.value.queries, lo, hi, users_per_batch)
    prefix = np.zeros(q, dtype=np.uint32)
    need = np.full(q, n, dtype=np.int64)
    threshold = np.full(q, np.nan, dtype=np.float64)  # nan: still searching
    done_bits = 0
    for bits in RADIX_BITS:
        counts = _histogram(users, payload, lo, hi, rows, prefix.copy(), done_bits, bits)
        for j in np.flatnonzero(np.isnan(threshold)):
            h = counts[j]
            if done_bits == 0 and h.sum() < need[j]:  # fewer eligible users than n: all of them
                threshold[j] = -np.inf
                continue
            from_top = np.cumsum(h[::-1])
            k = int(np.searchsorted(from_top, need[j]))
            bucket = len(h) - 1 - k
            need[j] -= from_top[k] - h[bucket]
            prefix[j] = (int(prefix[j]) << bits) | bucket
        done_bits += bits
    searching = np.isnan(threshold)
    threshold[searching] = [key_to_score(k) for k in prefix[searching]]
    floor = threshold - THRESHOLD_MARGIN * np.abs(np.nan_to_num(threshold, neginf=0.0)) - MARGIN_FLOOR
    floor = floor.astype(np.float32)
    log.info("segments %d..%d: score thresholds for the top %d found in %d passes", lo, hi - 1, n,
             len(RADIX_BITS))

    def emit(batches):
        p = payload.value
        segment_ids = p.segment_ids
        for block in _blocks(batches, rows):
            scores = _block_scores(block, p, lo, hi)
            r, c = np.nonzero((scores >= floor) & (scores > -np.inf))
            if r.size:
                users_col = block.column(block.schema.names.index(USER_ID)).take(pa.array(r))
                yield _candidate_batch(segment_ids, c + lo, users_col, scores[r, c])

    return users.mapInArrow(emit, CANDIDATE_DDL)


def _histogram(users: DataFrame, payload, lo: int, hi: int, rows: int, prefix: np.ndarray,
               done_bits: int, bits: int) -> np.ndarray:
    """Counts (q, 2**bits) of eligible scores whose key starts with ``prefix`` (``done_bits`` long),
    by their next ``bits`` bits, summed over all partitions."""
    q, width = hi - lo, 1 << bits
    shift = 32 - done_bits - bits

    def count(batches):
        p = payload.value
        totals = np.zeros(q * width, dtype=np.int64)
        for block in _blocks(batches, rows):
            scores = _block_scores(block, p, lo, hi)
            keys = sortable_keys(scores)
            match = scores > -np.inf
            if done_bits:
                match &= (keys >> np.uint32(32 - done_bits)) == prefix[None, :]
            buckets = (keys >> np.uint32(shift)) & np.uint32(width - 1)
            flat = np.arange(q, dtype=np.int64)[None, :] * width + buckets
            totals += np.bincount(flat[match], minlength=q * width)
        nz = np.flatnonzero(totals)
        if nz.size:
            yield pa.RecordBatch.from_arrays(
                [pa.array((nz // width).astype(np.int32)), pa.array((nz % width).astype(np.int32)),
                 pa.array(totals[nz])], names=[_Q, _BUCKET, _COUNT])

    partial = users.mapInArrow(count, f"{_Q} int, {_BUCKET} int, {_COUNT} long")
    counts = np.zeros((q, width), dtype=np.int64)
    # At most q x 2**bits rows (<= 1M): bounded by construction, whatever the number of users.
    for row in partial.groupBy(_Q, _BUCKET).agg(F.sum(_COUNT).alias(_COUNT)).collect():
        counts[row[_Q], row[_BUCKET]] = row[_COUNT]
    return counts
