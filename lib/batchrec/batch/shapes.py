"""Output shapes: how a batch job's result rows look in its Delta table and its JSON lines.

A result frame carries the shape's result columns; the Delta sink prefixes the run columns
(``run_date``, ``solution``, ``solution_version``, ``recipe``) and renames each result column to its
output name, and the JSON-lines sink lists ``list_column`` (and the scores, for models that score)
under ``jsonl_field`` for each request. Related items and segments add their shapes here.
"""

from __future__ import annotations

from dataclasses import dataclass

from batchrec.columns import (ITEM_ID, OUT_ITEM_ID, OUT_RANK, OUT_REASON, OUT_SCORE, OUT_USER_ID,
                              USER_ID)

RANK = "rank"
SCORE = "score"
REASON = "reason"


@dataclass(frozen=True)
class OutputShape:
    """The columns of one kind of batch output.

    Attributes:
        name: what the rows are, for logs ("recommendations").
        columns: ``(result column, output column, Spark SQL type)`` in output order.
        owner: the result column naming whom a list is for (a user, an item, a segment).
        list_column: the result column listed in the JSON lines, in rank order.
        jsonl_field: the Personalize output field holding that list.
        jsonl_scores: whether the JSON lines may carry ``scores`` (for models that score);
            Personalize's segment output has ``usersList`` only.
    """

    name: str
    columns: tuple[tuple[str, str, str], ...]
    owner: str
    list_column: str
    jsonl_field: str
    jsonl_scores: bool = True

    @property
    def output_columns(self) -> tuple[str, ...]:
        """The payload column names of the Delta table (after the run columns)."""
        return tuple(out for _, out, _ in self.columns)


RECOMMENDATIONS = OutputShape(
    name="recommendations",
    columns=((USER_ID, OUT_USER_ID, "string"), (RANK, OUT_RANK, "int"), (ITEM_ID, OUT_ITEM_ID, "string"),
             (SCORE, OUT_SCORE, "double"), (REASON, OUT_REASON, "string")),
    owner=USER_ID,
    list_column=ITEM_ID,
    jsonl_field="recommendedItems",
)

RELATED_ITEM_ID = "RELATED_ITEM_ID"
SEGMENT_ID = "segment_id"
QUERY = "query"

RELATED_ITEMS = OutputShape(
    name="related items",
    columns=((ITEM_ID, OUT_ITEM_ID, "string"), (RANK, OUT_RANK, "int"),
             (RELATED_ITEM_ID, "related_item_id", "string"), (SCORE, OUT_SCORE, "double"),
             (REASON, OUT_REASON, "string")),
    owner=ITEM_ID,
    list_column=RELATED_ITEM_ID,
    jsonl_field="recommendedItems",
)

SEGMENTS = OutputShape(
    name="segments",
    columns=((SEGMENT_ID, SEGMENT_ID, "string"), (QUERY, QUERY, "string"), (RANK, OUT_RANK, "int"),
             (USER_ID, OUT_USER_ID, "string"), (SCORE, OUT_SCORE, "double")),
    owner=SEGMENT_ID,
    list_column=USER_ID,
    jsonl_field="usersList",
    jsonl_scores=False,
)
