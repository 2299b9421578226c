"""A compiled filter (:class:`batchrec.filters.Eligibility`) applied with joins instead of a kernel.

Two jobs use it where the top-N cut is not a numpy block:

* :func:`keep_allowed` keeps the (request, ID) rows a filter allows: ``rank`` (each line's listed
  items) and ``related`` (each query item's stored neighbours, before the per-item cut). The joins
  go from the rows to the sets that hold their IDs, so the work is bounded by the rows times the
  sets an ID belongs to, never by requests x set sizes.
* :func:`segment_masks` turns a UserID filter into the allow/deny user lists of the segment kernel
  (``batchrec.scoring.segments``), which applies them before its per-segment cut.

Semantics (``batchrec.filters.eligibility``): an ID is allowed for a request when it is in the
global ``allowed`` (if any), not ``denied``, in one of the request's include sets when it has any,
and in none of its exclude sets.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from typing import Optional

from pyspark.sql import DataFrame, functions as F

from batchrec.filters.eligibility import ACTION, EXCLUDE, INCLUDE, SET_ID, Eligibility

_RESTRICTED = "_restricted"
_INCLUDED = "_included"


def keep_allowed(rows: DataFrame, eligibility: Eligibility, key: Optional[str] = None,
                 ident: Optional[str] = None) -> DataFrame:
    """The ``rows`` whose (``key``, ``ident``) pair the filter allows; other columns pass through.

    Args:
        rows: any rows naming a request (``key``, default the eligibility's key) and a returned ID
            (``ident``, default the eligibility's ID column).
    """
    key = key or eligibility.key
    ident = ident or eligibility.id_column
    out = rows
    if eligibility.allowed is not None:
        out = out.join(F.broadcast(_ids(eligibility.allowed, eligibility.id_column, ident)), ident, "left_semi")
    if eligibility.denied is not None:
        out = out.join(F.broadcast(_ids(eligibility.denied, eligibility.id_column, ident)), ident, "left_anti")
    if eligibility.is_global:
        return out
    hits, applicable = _hits(out.select(key, ident).distinct(), eligibility, key, ident)
    excluded = hits.where(F.col(ACTION) == EXCLUDE).select(key, ident).distinct()
    included = hits.where(F.col(ACTION) == INCLUDE).select(key, ident).distinct()
    restricted = applicable.where(F.col(ACTION) == INCLUDE).select(key).distinct()
    return (out.join(excluded, [key, ident], "left_anti")
            .join(restricted.withColumn(_RESTRICTED, F.lit(True)), key, "left")
            .join(included.withColumn(_INCLUDED, F.lit(True)), [key, ident], "left")
            .where(F.col(_RESTRICTED).isNull() | F.col(_INCLUDED).isNotNull())
            .drop(_RESTRICTED, _INCLUDED))


def _ids(frame: DataFrame, column: str, ident: str) -> DataFrame:
    return frame.select(F.col(column).alias(ident)).distinct()


def _applicable(eligibility: Eligibility, keys: DataFrame, key: str,
                common: Optional[tuple] = None) -> DataFrame:
    """``[key, set_id, action]``: the sets that apply to each of ``keys`` (membership, and the
    common sets: ``eligibility.common`` unless ``common`` is given)."""
    common = eligibility.common if common is None else common
    frames = []
    if eligibility.membership is not None:
        frames.append(eligibility.membership.select(F.col(eligibility.key).alias(key), SET_ID, ACTION)
                      .join(keys, key, "left_semi"))
    if common:
        rows = keys.sparkSession.createDataFrame(list(common), f"{SET_ID} long, {ACTION} string")
        frames.append(keys.crossJoin(F.broadcast(rows)))
    return _union(frames)


def _hits(pairs: DataFrame, eligibility: Eligibility, key: str, ident: str) -> tuple[DataFrame, DataFrame]:
    """``([key, ident, action], applicable)``: the sets applying to a pair's request that hold its ID."""
    keys = pairs.select(key).distinct()
    applicable = (_applicable(eligibility, keys, key) if eligibility.membership is not None or eligibility.common
                  else keys.select(key, F.lit(None).cast("long").alias(SET_ID),
                                   F.lit(None).cast("string").alias(ACTION)).limit(0))
    frames = []
    if eligibility.sets is not None:
        # pairs -> the sets holding their ID (few per ID) -> only those applying to the request
        in_sets = pairs.join(eligibility.sets.select(SET_ID, F.col(eligibility.id_column).alias(ident)), ident)
        frames.append(in_sets.join(applicable, [key, SET_ID]).select(key, ident, ACTION))
    if eligibility.pairs is not None:
        own = eligibility.pairs.select(F.col(eligibility.key).alias(key), F.col(eligibility.id_column).alias(ident),
                                       ACTION)
        frames.append(own.join(pairs, [key, ident], "left_semi"))
    if not frames:
        return pairs.select(key, ident, F.lit(None).cast("string").alias(ACTION)).limit(0), applicable
    return _union(frames), applicable


@dataclass(frozen=True)
class SegmentMasks:
    """A UserID filter as the segment kernel's masks (``batchrec.scoring.segments.affinity_segments``).

    Attributes:
        allow: ``[USER_ID]`` frames, each a global limit (their intersection applies).
        deny: ``[USER_ID]`` frames never eligible.
        allow_per_segment: ``[segment_id, USER_ID]`` eligible for their segment, for the segments
            in ``restricted``; None when no segment is restricted.
        deny_per_segment: ``[segment_id, USER_ID]`` not eligible for their segment, or None.
        restricted: the segments limited to their ``allow_per_segment`` rows.
    """

    allow: tuple[DataFrame, ...] = ()
    deny: tuple[DataFrame, ...] = ()
    allow_per_segment: Optional[DataFrame] = None
    deny_per_segment: Optional[DataFrame] = None
    restricted: tuple[str, ...] = ()

    def kernel_args(self) -> dict:
        """``allow_users``, ``deny_users`` and ``allow_segments`` of the segment kernel."""
        allow = list(self.allow) + ([self.allow_per_segment] if self.allow_per_segment is not None else [])
        deny = list(self.deny) + ([self.deny_per_segment] if self.deny_per_segment is not None else [])
        return {"allow_users": allow, "deny_users": deny,
                "allow_segments": list(self.restricted) if self.allow_per_segment is not None else None}


def segment_masks(eligibility: Eligibility, segments: DataFrame, segment_column: str) -> SegmentMasks:
    """The masks of a UserID filter compiled with the segments as requests.

    Args:
        eligibility: keyed by ``segment_column`` (one request per segment), IDs are ``USER_ID``.
        segments: ``[segment_column]``, every segment of the job.

    The restricted segments are collected (bounded by the job's segments).
    """
    key, ident = segment_column, eligibility.id_column
    allow = [_ids(eligibility.allowed, ident, ident)] if eligibility.allowed is not None else []
    deny = [_ids(eligibility.denied, ident, ident)] if eligibility.denied is not None else []
    if eligibility.is_global:
        return SegmentMasks(tuple(allow), tuple(deny))
    keys = segments.select(key).distinct()
    members = eligibility.membership is not None
    common_include = [s for s, action in eligibility.common if action == INCLUDE]
    common_exclude = [s for s, action in eligibility.common if action == EXCLUDE]
    sets = eligibility.sets
    # Common sets become global lists where they can: an exclude set always (its members are denied
    # to every segment), the include sets when nothing else restricts a segment (every segment is
    # then limited to the same union). Interactions sets have pairs, not set rows, and stay.
    folded: set[int] = set()
    if sets is not None and common_exclude:
        deny.append(sets.where(F.col(SET_ID).isin(common_exclude)).select(ident).distinct())
        folded |= set(common_exclude)
    if common_include and not members and eligibility.pairs is None and sets is not None:
        allow.append(sets.where(F.col(SET_ID).isin(common_include)).select(ident).distinct())
        folded |= set(common_include)
    common = tuple((s, a) for s, a in eligibility.common if s not in folded)
    per_allow, per_deny = [], []
    applicable = _applicable(eligibility, keys, key, common) if members or common else None
    if applicable is not None and sets is not None:
        expanded = applicable.join(sets.select(SET_ID, ident), SET_ID)
        per_allow.append(expanded.where(F.col(ACTION) == INCLUDE).select(key, ident))
        per_deny.append(expanded.where(F.col(ACTION) == EXCLUDE).select(key, ident))
    if eligibility.pairs is not None:
        own = eligibility.pairs.select(F.col(eligibility.key).alias(key), ident, ACTION)
        per_allow.append(own.where(F.col(ACTION) == INCLUDE).select(key, ident))
        per_deny.append(own.where(F.col(ACTION) == EXCLUDE).select(key, ident))
    restricted: list[str] = []
    if applicable is not None:
        restricted = sorted(r[0] for r in applicable.where(F.col(ACTION) == INCLUDE).select(key)
                            .distinct().collect())
    return SegmentMasks(tuple(allow), tuple(deny),
                        _union(per_allow).distinct() if per_allow and restricted else None,
                        _union(per_deny).distinct() if per_deny else None, tuple(restricted))


def _union(frames: list[DataFrame]) -> DataFrame:
    return reduce(DataFrame.unionByName, frames)
