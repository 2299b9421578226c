"""A compiled filter (:class:`batchrec.filters.Eligibility`) applied inside the scoring kernels.

Three steps:

1. :func:`collect_filter` (driver): the request-independent parts, bounded by the catalogue, are
   collected once: allowed/denied IDs and each set's IDs.
2. :func:`attach_filter_columns` (Spark): each request row gets its include/exclude set ids and
   its include/exclude IDs (Interactions results) as four array columns, by joins on the key.
3. :func:`item_mask` + :func:`block_allowed` (executors): for one kernel's item array (the
   broadcast item matrix, or a ranked list), a boolean ``allowed`` per (request, item) of one block,
   built from the broadcast positions and the block's columns. Nothing of size requests x items
   exists outside a block.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, functions as F

from batchrec.errors import JobError
from batchrec.filters.eligibility import ACTION, EXCLUDE, INCLUDE, SET_ID, Eligibility
from batchrec.filters.settings import DEFAULT_MAX_COLLECTED_IDS

FILTER_INCLUDE_SETS = "filter_include_sets"  # array<long>
FILTER_EXCLUDE_SETS = "filter_exclude_sets"  # array<long>
FILTER_INCLUDE_IDS = "filter_include_ids"  # array<string>
FILTER_EXCLUDE_IDS = "filter_exclude_ids"  # array<string>
FILTER_COLUMNS = (FILTER_INCLUDE_SETS, FILTER_EXCLUDE_SETS, FILTER_INCLUDE_IDS, FILTER_EXCLUDE_IDS)
_EMPTY = {FILTER_INCLUDE_SETS: "array<bigint>", FILTER_EXCLUDE_SETS: "array<bigint>",
          FILTER_INCLUDE_IDS: "array<string>", FILTER_EXCLUDE_IDS: "array<string>"}


@dataclass(frozen=True)
class CollectedFilter:
    """The request-independent parts of an eligibility, by ID, on the driver.

    Attributes:
        allowed: IDs that may be returned at all (None: no such limit).
        denied: IDs never returned.
        sets: set id -> its request-independent IDs.
        common_include / common_exclude: sets that apply to every request.
        per_request: requests carry their own sets or IDs (see :func:`attach_filter_columns`).
    """

    allowed: Optional[np.ndarray] = None
    denied: Optional[np.ndarray] = None
    sets: Mapping[int, np.ndarray] = field(default_factory=dict)
    common_include: tuple[int, ...] = ()
    common_exclude: tuple[int, ...] = ()
    per_request: bool = False


def collect_filter(eligibility: Eligibility, max_ids: int = DEFAULT_MAX_COLLECTED_IDS) -> CollectedFilter:
    """Bring the request-independent parts to the driver (at most ``max_ids`` IDs in all).

    Raises:
        JobError: more than ``max_ids`` IDs, e.g. one set per distinct per-line value over a large
            catalogue.
    """
    ident = eligibility.id_column
    budget = [max_ids]

    def ids_of(df: Optional[DataFrame], *columns: str):
        if df is None:
            return None
        from batchrec.scoring.topk import _to_pandas  # (topk imports this module)

        pdf = _to_pandas(df.select(*columns).limit(budget[0] + 1))
        if len(pdf) > budget[0]:
            raise JobError(f"filter {eligibility.expression!r}: its item sets hold more than {max_ids} IDs; "
                           "raise filters.max_collected_ids or use fewer distinct per-line values")
        budget[0] -= len(pdf)
        return pdf

    allowed = ids_of(eligibility.allowed, ident)
    denied = ids_of(eligibility.denied, ident)
    sets_pdf = ids_of(eligibility.sets, SET_ID, ident)
    sets: dict[int, np.ndarray] = {}
    if sets_pdf is not None and len(sets_pdf):
        for set_id, group in sets_pdf.groupby(SET_ID):
            sets[int(set_id)] = group[ident].to_numpy(dtype=object)
    return CollectedFilter(
        allowed=None if allowed is None else allowed[ident].to_numpy(dtype=object),
        denied=None if denied is None else denied[ident].to_numpy(dtype=object),
        sets=sets,
        common_include=tuple(s for s, a in eligibility.common if a == INCLUDE),
        common_exclude=tuple(s for s, a in eligibility.common if a == EXCLUDE),
        per_request=eligibility.membership is not None or eligibility.pairs is not None,
    )


def attach_filter_columns(requests: DataFrame, eligibility: Eligibility) -> DataFrame:
    """``requests`` (which hold ``eligibility.key``) plus the four :data:`FILTER_COLUMNS`, empty arrays
    for requests without per-request sets or IDs."""
    key, ident = eligibility.key, eligibility.id_column
    if key not in requests.columns:
        raise JobError(f"the scored rows have no request key column {key!r} to attach the filter by")
    out = requests
    is_include = F.col(ACTION) == INCLUDE
    if eligibility.membership is not None:
        member = eligibility.membership.groupBy(key).agg(
            F.collect_set(F.when(is_include, F.col(SET_ID))).alias(FILTER_INCLUDE_SETS),
            F.collect_set(F.when(~is_include, F.col(SET_ID))).alias(FILTER_EXCLUDE_SETS))
        out = out.join(member, key, "left")
    if eligibility.pairs is not None:
        pairs = eligibility.pairs.groupBy(key).agg(
            F.collect_set(F.when(is_include, F.col(ident))).alias(FILTER_INCLUDE_IDS),
            F.collect_set(F.when(~is_include, F.col(ident))).alias(FILTER_EXCLUDE_IDS))
        out = out.join(pairs, key, "left")
    for name, ddl in _EMPTY.items():
        empty = F.array().cast(ddl)
        out = (out.withColumn(name, F.coalesce(F.col(name), empty)) if name in out.columns
               else out.withColumn(name, empty))
    return out


@dataclass(frozen=True)
class ItemMask:
    """A collected filter over one kernel's ID array (positions 0..n-1), ready to broadcast.

    Attributes:
        ids: position -> ID.
        base: allowed for every request (global and common excludes); None when all are.
        common_keep: the union of the common include sets; None when there is none.
        set_ids: sorted set ids; ``set_pos[set_ptr[i]:set_ptr[i + 1]]`` are set i's positions.
    """

    ids: np.ndarray
    base: Optional[np.ndarray]
    common_keep: Optional[np.ndarray]
    set_ids: np.ndarray
    set_ptr: np.ndarray
    set_pos: np.ndarray
    per_request: bool

    @property
    def size(self) -> int:
        return len(self.ids)

    def members(self, set_id: int) -> np.ndarray:
        """Positions of a set (empty when the set has no request-independent IDs here)."""
        i = int(np.searchsorted(self.set_ids, set_id))
        if i < len(self.set_ids) and self.set_ids[i] == set_id:
            return self.set_pos[self.set_ptr[i]:self.set_ptr[i + 1]]
        return self.set_pos[:0]


def item_mask(collected: CollectedFilter, ids: np.ndarray) -> ItemMask:
    """Map a collected filter onto ``ids`` (the kernel's position -> ID array)."""
    import pandas as pd

    index = pd.Index(ids)
    n = len(ids)

    def positions(members) -> np.ndarray:
        pos = index.get_indexer(members) if len(members) else np.zeros(0, np.int64)
        return np.unique(pos[pos >= 0]).astype(np.int64)

    base = None
    if collected.allowed is not None:
        base = np.zeros(n, dtype=bool)
        base[positions(collected.allowed)] = True
    excluded = [positions(collected.denied)] if collected.denied is not None else []
    excluded += [positions(collected.sets.get(s, ())) for s in collected.common_exclude]
    for pos in excluded:
        base = np.ones(n, dtype=bool) if base is None else base
        base[pos] = False
    common_keep = None
    if collected.common_include:
        common_keep = np.zeros(n, dtype=bool)
        for s in collected.common_include:
            common_keep[positions(collected.sets.get(s, ()))] = True
    set_ids = np.array(sorted(collected.sets), dtype=np.int64)
    members = [positions(collected.sets[int(s)]) for s in set_ids]
    ptr = np.zeros(len(set_ids) + 1, dtype=np.int64)
    ptr[1:] = np.cumsum([len(m) for m in members])
    pos = np.concatenate(members) if members else np.zeros(0, np.int64)
    return ItemMask(np.asarray(ids, dtype=object), base, common_keep, set_ids, ptr, pos,
                    collected.per_request)


def block_allowed(mask: ItemMask, block: pa.RecordBatch, index=None) -> Optional[np.ndarray]:
    """Which items each request of ``block`` may get.

    Args:
        mask: from :func:`item_mask`.
        block: request rows, with the :data:`FILTER_COLUMNS` when the filter has per-request parts.
        index: a ``pandas.Index`` over ``mask.ids`` (built once per partition by the caller).

    Returns:
        None (everything allowed), a ``(n,)`` mask for every row, or a ``(rows, n)`` mask.
    """
    names = block.schema.names
    b, n = block.num_rows, mask.size
    inc_rows, inc_sets = _list_pairs(block, names, FILTER_INCLUDE_SETS)
    exc_rows, exc_sets = _list_pairs(block, names, FILTER_EXCLUDE_SETS)
    inc_id_rows, inc_ids = _list_pairs(block, names, FILTER_INCLUDE_IDS)
    exc_id_rows, exc_ids = _list_pairs(block, names, FILTER_EXCLUDE_IDS)
    per_row = len(inc_rows) + len(exc_rows) + len(inc_id_rows) + len(exc_id_rows)
    if not per_row and mask.common_keep is None:
        return mask.base
    allowed = np.ones((b, n), dtype=bool) if mask.base is None else np.tile(mask.base, (b, 1))
    if index is None and (len(inc_ids) or len(exc_ids)):
        import pandas as pd

        index = pd.Index(mask.ids)
    restricted = np.zeros(b, dtype=bool)
    restricted[inc_rows] = True
    if mask.common_keep is not None:
        restricted[:] = True
    if restricted.any():
        keep = np.zeros((b, n), dtype=bool)
        if mask.common_keep is not None:
            keep |= mask.common_keep
        _scatter(keep, inc_rows, inc_sets, mask, True)
        _scatter_ids(keep, inc_id_rows, inc_ids, index, True)
        allowed &= keep | ~restricted[:, None]
    _scatter(allowed, exc_rows, exc_sets, mask, False)
    _scatter_ids(allowed, exc_id_rows, exc_ids, index, False)
    return allowed


def _list_pairs(block: pa.RecordBatch, names, column: str) -> tuple[np.ndarray, np.ndarray]:
    """(row, value) for every element of a list column; empty when the column is absent."""
    if column not in names:
        return np.zeros(0, np.int64), np.zeros(0)
    lists = block.column(names.index(column))
    rows = pc.list_parent_indices(lists).to_numpy()
    values = lists.flatten().to_numpy(zero_copy_only=False)
    return rows.astype(np.int64), values


# Above this fraction of the items, a set is written as a dense row (contiguous) instead of by index.
DENSE_SET_FRACTION = 0.125


def _scatter(target: np.ndarray, rows: np.ndarray, set_ids: np.ndarray, mask: ItemMask, value: bool) -> None:
    """``target[r, members(s)] = value`` for each (r, s), one vectorized assignment per distinct set."""
    if not len(rows):
        return
    set_ids = set_ids.astype(np.int64)
    for s in np.unique(set_ids):
        members = mask.members(int(s))
        if not len(members):
            continue
        these = np.unique(rows[set_ids == s])
        if len(members) > DENSE_SET_FRACTION * target.shape[1]:
            dense = np.zeros(target.shape[1], dtype=bool)
            dense[members] = True
            if value:
                target[these] |= dense
            else:
                target[these] &= ~dense
        else:
            target[np.ix_(these, members)] = value


def _scatter_ids(target: np.ndarray, rows: np.ndarray, ids: np.ndarray, index, value: bool) -> None:
    if not len(rows):
        return
    pos = index.get_indexer(ids)
    ok = pos >= 0
    target[rows[ok], pos[ok]] = value
