"""What a batch job may return: the items each user has already seen (and, next, filters).

Seen pairs come from the solution version (the ``seen_items`` artifact, the whole valid history at
training time) plus, when ``--interactions`` names fresher data, that data read with a light parse:
only the ID and event-type columns, no validation. Scoring never re-validates a dataset.
"""

from __future__ import annotations

import logging
from typing import Optional, Sequence

from pyspark.sql import DataFrame, functions as F

from batchrec import catalogue, logs
from batchrec.columns import CREATION_TIMESTAMP, EVENT_TYPE, ITEM_ID, USER_ID
from batchrec.datasets import readers
from batchrec.datasets.schema import INTERACTIONS, ITEMS, load_personalize_schema
from batchrec.errors import DataError
from batchrec.scoring.recommend import seen_items

log = logging.getLogger(__name__)


def seen_pairs(model_artifacts, fresher: Optional[DataFrame],
               event_types: Sequence[str] = ()) -> Optional[DataFrame]:
    """``[USER_ID, ITEM_ID]`` pairs that count as seen (only ``event_types`` when given).

    Args:
        model_artifacts: the version's artifacts (``seen_items`` when it was trained with it).
        fresher: :func:`light_interactions` of ``--interactions`` (or, for older versions without
            ``seen_items``, of the interactions recorded with the version), or None.
        event_types: only these event types count as seen (case-insensitive, as in Personalize).
    """
    frames = []
    if model_artifacts.get(catalogue.SEEN_ITEMS) is not None:
        frames.append(model_artifacts[catalogue.SEEN_ITEMS])
    if fresher is not None:
        frames.append(fresher)
    if not frames:
        return None
    seen = frames[0].select(USER_ID, ITEM_ID, EVENT_TYPE)
    for other in frames[1:]:
        seen = seen.unionByName(other.select(USER_ID, ITEM_ID, EVENT_TYPE))
    return seen_items(seen, event_types)


def light_interactions(spark, path: str, recorded: dict, data_format: str, delimiter: str) -> DataFrame:
    """``[USER_ID, ITEM_ID, EVENT_TYPE]`` of an interactions dataset, read with the schemas and
    renames the version was trained with; rows without both IDs are skipped (validation is
    ``batchrec validate``'s job, not a scoring job's)."""
    raw = _read(spark, path, INTERACTIONS, recorded, data_format, delimiter)
    event_type = F.col(EVENT_TYPE) if EVENT_TYPE in raw.columns else F.lit(None)
    return (raw.select(F.trim(F.col(USER_ID)).alias(USER_ID), F.trim(F.col(ITEM_ID)).alias(ITEM_ID),
                       event_type.cast("string").alias(EVENT_TYPE))
            .where((F.col(USER_ID) != "") & (F.col(ITEM_ID) != "")))


def light_items(spark, path: str, recorded: dict, data_format: str, delimiter: str) -> DataFrame:
    """``[ITEM_ID, CREATION_TIMESTAMP]`` of an items dataset (exploration's item ages)."""
    raw = _read(spark, path, ITEMS, recorded, data_format, delimiter)
    created = (F.col(CREATION_TIMESTAMP).cast("long") if CREATION_TIMESTAMP in raw.columns
               else F.lit(None).cast("long"))
    return raw.select(F.trim(F.col(ITEM_ID)).alias(ITEM_ID), created.alias(CREATION_TIMESTAMP))


def items_dataset(spark, path: str, recorded: dict, data_format: str, delimiter: str) -> DataFrame:
    """The items dataset with every attribute column (attribute queries), IDs trimmed, blank IDs
    skipped."""
    raw = _read(spark, path, ITEMS, recorded, data_format, delimiter)
    return raw.withColumn(ITEM_ID, F.trim(F.col(ITEM_ID))).where(F.col(ITEM_ID) != "")


def _read(spark, path: str, kind: str, recorded: dict, data_format: str, delimiter: str) -> DataFrame:
    schema = next((s for s in (load_personalize_schema(p) for p in recorded.get("schemas") or ())
                   if s.kind == kind), None)
    renames = tuple(tuple(r) for r in recorded.get("renames") or ())
    with logs.stage(log, f"read_{kind}", path=path):
        try:
            return readers.read_dataset(spark, path, kind, data_format or "auto", delimiter, schema, renames)
        except DataError:
            raise
        except Exception as exc:  # an unreadable file surfaces from Spark as a Py4J/Analysis error
            raise DataError(f"{path}: cannot read the {kind} dataset: {str(exc).splitlines()[0]}") from exc
