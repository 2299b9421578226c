"""The DynamoDB data model: keys, views and items (pure Python, runs on the executors).

One table, a string partition key ``pk`` and a string sort key ``sk``; every item also carries
``kind`` (its view), the run columns, ``generated_at`` and the TTL attribute. Key components are
joined with ``#``; a ``%`` or ``#`` inside a component is percent-encoded (``%25``, ``%23``) so two
different IDs never make the same key. README.md ("DynamoDB export") explains the choices.

==================== ================================= ====================== =====================================
view                 pk                                sk                     list attributes (in rank order)
==================== ================================= ====================== =====================================
``recommendations``  ``U#<user_id>``                   ``RECS#<solution>``    item_ids, scores, reasons
``related``          ``I#<item_id>``                   ``RELATED#<solution>`` related_item_ids, scores, reasons
``segment_members``  ``SEG#<solution>#<segment_id>``   ``P#<page, 6 digits>`` user_ids, scores (ranks from first_rank)
``user_segments``    ``U#<user_id>``                   ``SEGS#<solution>``    segment_ids, ranks, scores (best first)
==================== ================================= ====================== =====================================

Items stay under DynamoDB's 400 KB: :func:`build_item` drops list entries from the tail (the
lowest ranked) until the item fits, and reports how many it dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional

PK = "pk"
SK = "sk"
KIND = "kind"
GENERATED_AT = "generated_at"
ENTRIES = "entries"
KEY_SEPARATOR = "#"
PAGE_DIGITS = 6

# DynamoDB's limits.
MAX_PK_BYTES = 2048
MAX_SK_BYTES = 1024
MAX_ITEM_BYTES = 400 * 1024
# Largest and smallest magnitudes a DynamoDB Number holds (38 significant digits, exponent -130..125).
MAX_NUMBER = 9.9999999999999999999999999999999999999e125
MIN_NUMBER = 1e-130
# Bytes a Number may take at most, and the overhead of a List and of each of its elements.
MAX_NUMBER_BYTES = 21
LIST_OVERHEAD_BYTES = 3
LIST_ELEMENT_OVERHEAD_BYTES = 1

ORDER_RANK = "rank"            # rank ascending, then member ID ascending
ORDER_SCORE = "score"          # score descending (nulls last), then member ID ascending

RECOMMENDATIONS_VIEW = "recommendations"
RELATED_VIEW = "related"
SEGMENT_MEMBERS_VIEW = "segment_members"
USER_SEGMENTS_VIEW = "user_segments"


@dataclass(frozen=True)
class ListAttribute:
    """A list attribute filled from one field of the entries: ``kind`` is ``S`` or ``N``."""

    name: str
    field: str
    kind: str


@dataclass(frozen=True)
class View:
    """How the rows of one item become its attributes.

    ``strings`` and ``numbers`` are scalar attributes taken from the same-named fields of the
    row; ``lists`` are parallel lists built from ``entries`` (a list of dicts) sorted by ``order``
    with ``member`` breaking ties.
    """

    name: str
    strings: tuple[str, ...]
    numbers: tuple[str, ...]
    lists: tuple[ListAttribute, ...]
    order: str
    member: str


RUN_STRINGS = ("solution", "solution_version", "recipe", "run_date")
VIEWS = {
    RECOMMENDATIONS_VIEW: View(
        RECOMMENDATIONS_VIEW, ("user_id",) + RUN_STRINGS, (),
        (ListAttribute("item_ids", "item_id", "S"), ListAttribute("scores", "score", "N"),
         ListAttribute("reasons", "reason", "S")), ORDER_RANK, "item_id"),
    RELATED_VIEW: View(
        RELATED_VIEW, ("item_id",) + RUN_STRINGS, (),
        (ListAttribute("related_item_ids", "related_item_id", "S"), ListAttribute("scores", "score", "N"),
         ListAttribute("reasons", "reason", "S")), ORDER_RANK, "related_item_id"),
    SEGMENT_MEMBERS_VIEW: View(
        SEGMENT_MEMBERS_VIEW, ("segment_id", "query") + RUN_STRINGS, ("page", "first_rank", "members", "pages"),
        (ListAttribute("user_ids", "user_id", "S"), ListAttribute("scores", "score", "N")),
        ORDER_RANK, "user_id"),
    USER_SEGMENTS_VIEW: View(
        USER_SEGMENTS_VIEW, ("user_id",) + RUN_STRINGS, (),
        (ListAttribute("segment_ids", "segment_id", "S"), ListAttribute("ranks", "rank", "N"),
         ListAttribute("scores", "score", "N")), ORDER_SCORE, "segment_id"),
}


@dataclass(frozen=True)
class Stamp:
    """What every item of one export carries: when it was written and when it expires."""

    generated_at: str
    ttl_attribute: str = "ttl"
    ttl_epoch: int = 0            # 0: no TTL attribute


@dataclass
class BuiltItem:
    """An item ready for ``PutRequest``, its estimated size and what the size guard did."""

    item: dict
    size: int
    trimmed_entries: int = 0
    nulled_numbers: int = 0


class ItemTooLarge(ValueError):
    """The item's scalar attributes alone exceed the size limit (no list entry left to drop)."""


def key_part(value: Any) -> str:
    """One key component with ``%`` and ``#`` percent-encoded (the inverse of :func:`unkey_part`)."""
    return str(value).replace("%", "%25").replace(KEY_SEPARATOR, "%23")


def unkey_part(part: str) -> str:
    """Decode one key component."""
    return part.replace("%23", KEY_SEPARATOR).replace("%25", "%")


def recommendations_key(user_id: str, solution: str) -> dict:
    """Key of a user's recommendations from ``solution`` (what a reader passes to GetItem)."""
    return {PK: {"S": f"U#{key_part(user_id)}"}, SK: {"S": f"RECS#{key_part(solution)}"}}


def related_key(item_id: str, solution: str) -> dict:
    """Key of an item's related items from ``solution``."""
    return {PK: {"S": f"I#{key_part(item_id)}"}, SK: {"S": f"RELATED#{key_part(solution)}"}}


def segment_page_key(solution: str, segment_id: str, page: int) -> dict:
    """Key of one page of a segment's members (pages count from 0)."""
    return {PK: {"S": f"SEG#{key_part(solution)}#{key_part(segment_id)}"},
            SK: {"S": f"P#{page:0{PAGE_DIGITS}d}"}}


def user_segments_key(user_id: str, solution: str) -> dict:
    """Key of the list of segments a user belongs to in ``solution``."""
    return {PK: {"S": f"U#{key_part(user_id)}"}, SK: {"S": f"SEGS#{key_part(solution)}"}}


def number_value(value: Any) -> tuple[dict, bool]:
    """A DynamoDB Number for ``value`` (``NULL`` for None), and whether it had to become ``NULL``.

    DynamoDB cannot store NaN, infinities or magnitudes outside 1e-130..1e126; those become
    ``NULL`` and are counted rather than failing the whole batch.
    """
    if value is None:
        return {"NULL": True}, False
    if isinstance(value, bool):
        return {"N": str(int(value))}, False
    if isinstance(value, int):
        return {"N": str(value)}, False
    number = float(value)
    if not math.isfinite(number) or abs(number) > MAX_NUMBER or (number != 0 and abs(number) < MIN_NUMBER):
        return {"NULL": True}, True
    # repr is the shortest string that reads back as the same double.
    return {"N": repr(number)}, False


def string_value(value: Any) -> dict:
    """A DynamoDB String for ``value`` (``NULL`` for None)."""
    return {"NULL": True} if value is None else {"S": str(value)}


def value_size(value: Mapping[str, Any]) -> int:
    """DynamoDB's size of one attribute value in bytes, never below the real one.

    Numbers count as their decimal string plus one byte (at most 21), which is at least
    DynamoDB's "one byte per two significant digits plus one".
    """
    (kind, raw), = value.items()
    if kind == "S":
        return len(raw.encode("utf-8"))
    if kind == "N":
        return min(len(raw) + 1, MAX_NUMBER_BYTES)
    if kind in ("NULL", "BOOL"):
        return 1
    if kind == "L":
        return LIST_OVERHEAD_BYTES + sum(value_size(v) + LIST_ELEMENT_OVERHEAD_BYTES for v in raw)
    if kind == "M":
        return LIST_OVERHEAD_BYTES + sum(len(k.encode("utf-8")) + value_size(v) + LIST_ELEMENT_OVERHEAD_BYTES
                                         for k, v in raw.items())
    raise ValueError(f"unsupported attribute type {kind}")


def item_size(item: Mapping[str, Mapping[str, Any]]) -> int:
    """DynamoDB's size of a whole item: attribute names plus values."""
    return sum(len(name.encode("utf-8")) + value_size(value) for name, value in item.items())


def write_units(size: int) -> int:
    """Write capacity units one put of an item of ``size`` bytes costs (1 WCU per started KB)."""
    return max(1, math.ceil(size / 1024))


def sort_entries(entries: list, view: View) -> list:
    """Entries in list order: rank ascending, or score descending with nulls last; ties by member ID."""
    if view.order == ORDER_SCORE:
        def key(entry):
            score = entry.get("score")
            return (score is None, -(score or 0.0), entry[view.member])
    else:
        def key(entry):
            return (entry["rank"], entry[view.member])
    return sorted(entries, key=key)


def build_item(row: Mapping[str, Any], view: View, stamp: Stamp, max_bytes: int = MAX_ITEM_BYTES) -> BuiltItem:
    """The DynamoDB item (AttributeValue form) for one grouped row.

    Args:
        row: ``pk``, ``sk``, the view's scalar fields and ``entries`` (dicts with the list fields).
        view: which attributes to build.
        stamp: ``generated_at`` and TTL of this export.
        max_bytes: size limit; list entries are dropped from the tail (lowest ranked) until the
            item fits.

    Raises:
        ItemTooLarge: the item does not fit even with empty lists.
    """
    item: dict = {PK: {"S": row[PK]}, SK: {"S": row[SK]}, KIND: {"S": view.name}}
    for name in view.strings:
        if row.get(name) is not None:
            item[name] = {"S": str(row[name])}
    nulled = 0
    for name in view.numbers:
        if row.get(name) is not None:
            value, was_nulled = number_value(row[name])
            item[name] = value
            nulled += was_nulled
    item[GENERATED_AT] = {"S": stamp.generated_at}
    if stamp.ttl_epoch:
        item[stamp.ttl_attribute] = {"N": str(stamp.ttl_epoch)}

    entries = sort_entries(list(row[ENTRIES] or ()), view)
    columns: dict[str, list] = {}
    for attribute in view.lists:
        values = []
        for entry in entries:
            if attribute.kind == "N":
                value, was_nulled = number_value(entry.get(attribute.field))
                nulled += was_nulled
            else:
                value = string_value(entry.get(attribute.field))
            values.append(value)
        columns[attribute.name] = values

    size = item_size(item) + sum(len(name.encode("utf-8")) + LIST_OVERHEAD_BYTES for name in columns)
    entry_sizes = [sum(value_size(values[i]) + LIST_ELEMENT_OVERHEAD_BYTES for values in columns.values())
                   for i in range(len(entries))]
    size += sum(entry_sizes)
    keep = len(entries)
    while size > max_bytes and keep > 0:
        keep -= 1
        size -= entry_sizes[keep]
    if size > max_bytes:
        raise ItemTooLarge(f"item {row[PK]!r}/{row[SK]!r} takes {size} bytes without any list entry; "
                           f"the limit is {max_bytes}")
    for name, values in columns.items():
        item[name] = {"L": values[:keep]}
    return BuiltItem(item, size, len(entries) - keep, nulled)


def plain(value: Mapping[str, Any]) -> Any:
    """A stored attribute value as plain Python (numbers as float or int), for comparisons."""
    (kind, raw), = value.items()
    if kind == "S":
        return raw
    if kind == "N":
        number = float(raw)
        return int(number) if number.is_integer() and "." not in raw and "e" not in raw.lower() else number
    if kind == "NULL":
        return None
    if kind == "BOOL":
        return raw
    if kind == "L":
        return [plain(v) for v in raw]
    if kind == "M":
        return {k: plain(v) for k, v in raw.items()}
    raise ValueError(f"unsupported attribute type {kind}")


def plain_item(item: Optional[Mapping[str, Mapping[str, Any]]]) -> Optional[dict]:
    """A whole item as plain Python (None stays None)."""
    return None if item is None else {name: plain(value) for name, value in item.items()}
