"""What a compiled filter says each request may get, in a form that never lists requests x items.

``allowed(r) = G ∩ (everything if r has no include set, else ∪ include sets of r) − ∪ exclude sets of r``

where ``G`` (:attr:`Eligibility.allowed` minus :attr:`Eligibility.denied`) holds for every request,
and a *set* is the result of one expression: its request-independent content in
:attr:`Eligibility.sets` plus, for Interactions expressions, per-request content in
:attr:`Eligibility.pairs`. Which sets apply to which request is :attr:`Eligibility.membership`
(plus :attr:`Eligibility.common`, which apply to every request). A request with at least one include
set (even an empty one) is *restricted* to the union of its include sets.

Sizes: ``allowed``/``denied``/``sets`` are bounded by the candidates (the catalogue) times the
number of distinct value bindings (one per expression without placeholders; one per distinct
per-line value combination or query-item value otherwise); ``membership`` by requests x
expressions; ``pairs`` by each user's filter window (at most N interactions per event type).

``ID`` below is ``ITEM_ID`` for ItemID filters and ``USER_ID`` for UserID filters (segments);
``key`` is the request key chosen by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

SET_ID = "set_id"
ACTION = "action"
ERROR = "filter_error"
INCLUDE = "include"
EXCLUDE = "exclude"


@dataclass(frozen=True)
class Eligibility:
    """A compiled filter for one batch job.

    Attributes:
        id_column: ``ITEM_ID`` or ``USER_ID``: the column of IDs in every table below.
        key: the request key column of ``membership``, ``pairs`` and ``errors``.
        allowed: ``[ID]``: only these may be returned to any request (None: no such limit). IDs
            outside the candidates given to the compiler are never in it.
        denied: ``[ID]``: these are never returned (None: none).
        sets: ``[set_id long, ID]``: request-independent content of each set (small: broadcast it).
        membership: ``[key, set_id long, action]``: the sets that apply to a request.
        common: ``((set_id, action), ...)``: sets that apply to every request.
        pairs: ``[key, set_id long, ID, action]``: per-request content of Interactions sets, only for
            requests the set applies to.
        errors: ``[key, filter_error]``: requests whose ``filterValues`` cannot be used; they must
            not be served (their other rows here are left out).
        expression: the filter text.
        dropped: expressions skipped for every request (EXCLUDE without placeholder values).
    """

    id_column: str
    key: str
    allowed: Optional["DataFrame"] = None
    denied: Optional["DataFrame"] = None
    sets: Optional["DataFrame"] = None
    membership: Optional["DataFrame"] = None
    common: tuple[tuple[int, str], ...] = ()
    pairs: Optional["DataFrame"] = None
    errors: Optional["DataFrame"] = None
    expression: str = ""
    dropped: tuple[str, ...] = ()

    @property
    def is_global(self) -> bool:
        """True when every request gets the same eligible IDs (only ``allowed``/``denied``)."""
        return self.membership is None and self.pairs is None and not self.common

    @property
    def is_empty(self) -> bool:
        """True when nothing is filtered (no expression left, or none restricts anything)."""
        return self.is_global and self.allowed is None and self.denied is None
