"""What a batch job may return: the items each user has already seen, and its filter.

Seen pairs come from the solution version (the ``seen_items`` artifact, the whole valid history at
training time) plus, when ``--interactions`` names fresher data, that data read with a light parse:
only the ID and event-type columns, no validation. Scoring never re-validates a dataset.

A ``--filter`` (:class:`JobFilter`) is parsed before Spark starts (:func:`parse_job_filter`) and
compiled for the requests by :func:`apply_job_filter`, which reads only the datasets it uses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from pyspark.sql import DataFrame, functions as F

from batchrec import catalogue, logs
from batchrec.batch import inputs
from batchrec.columns import CREATION_TIMESTAMP, EVENT_TYPE, ITEM_ID, TIMESTAMP, USER_ID
from batchrec.datasets import readers
from batchrec.datasets.schema import INTERACTIONS, ITEMS, USERS, load_personalize_schema
from batchrec.errors import DataError
from batchrec.filters.settings import FilterSettings
from batchrec.jsontext import parse_object
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


# --- filters (--filter / --filter-values) -------------------------------------------------------

@dataclass(frozen=True)
class JobFilter:
    """A batch job's ``--filter`` as given and checked before Spark starts.

    Attributes:
        text: the expression as written (the summary's ``filter``).
        parsed: the parsed, context-checked filter (fields are checked once the datasets are read).
        values: the global ``--filter-values`` JSON text, or None.
        settings: the ``[filters]`` section.
        context: the job's :class:`batchrec.filters.FilterContext` (what it returns, what its
            requests carry).
    """

    text: str
    parsed: Any
    values: Optional[str]
    settings: FilterSettings
    context: Any = None

    def kinds(self) -> set[str]:
        """The datasets the filter reads: ``items``, ``interactions``, ``users``."""
        return datasets_needed(self.parsed)


def parse_job_filter(expression: str, values: Optional[str], settings: FilterSettings = FilterSettings(),
                     context=None, per_line: bool = True) -> JobFilter:
    """Parse and check ``--filter`` and ``--filter-values`` without Spark.

    Args:
        per_line: requests may carry their own ``filterValues`` (an ``--input`` file), so a missing
            INCLUDE value is a per-line error rather than a usage error.

    Raises:
        FilterError: a syntax error (with its column), a dataset or operator the job cannot use,
            malformed values or values for names the filter does not have.
    """
    from batchrec.filters import RECOMMEND, check_filter, parse_filter, parse_filter_values, plan_values

    context = context or RECOMMEND
    filt = check_filter(parse_filter(expression), context, None)
    plan_values(filt, parse_filter_values(values), per_line)
    return JobFilter(expression, filt, values, settings, context)


def job_filter_options(settings: FilterSettings, context, expression: Optional[str], values: Optional[str],
                       name: Optional[str] = None, input_path: Optional[str] = None) -> Optional[JobFilter]:
    """A batch job's ``--filter``/``--filter-name``/``--filter-values``, checked without Spark.

    ``settings`` is the ``[filters]`` section; ``--filter-name N`` is its ``named`` expression N.

    Returns:
        The :class:`JobFilter`, or None without a filter.

    Raises:
        UsageError: ``--filter`` with ``--filter-name``, an unknown name, or ``--filter-values``
            without a filter.
        FilterError: as :func:`parse_job_filter` (an INCLUDE placeholder needs a value unless the
            ``--input`` lines may carry their own).
    """
    from batchrec.errors import UsageError

    if name is not None:
        if expression is not None:
            raise UsageError("--filter and --filter-name both given; give one of them")
        named = settings.named
        if name not in named:
            known = ", ".join(sorted(named)) or "none are configured"
            raise UsageError(f"--filter-name {name!r}: no such filter in [filters.named] ({known})")
        expression = named[name]
    if expression is None:
        if values is not None:
            raise UsageError("--filter-values without --filter; give the filter expression too")
        return None
    return parse_job_filter(expression, values, settings, context, per_line=input_path is not None)


def datasets_needed(filt) -> set[str]:
    """The dataset kinds a checked filter reads (``IF CurrentUser`` reads the users)."""
    from batchrec.filters.check import KIND_OF

    kinds = set()
    for expr in filt.expressions:
        kinds.add(KIND_OF[expr.dataset])
        if expr.when:
            kinds.add(USERS)
    return kinds


def filter_interactions(spark, paths: Sequence[str], recorded: dict, data_format: str,
                        delimiter: str) -> DataFrame:
    """``[USER_ID, ITEM_ID, EVENT_TYPE, TIMESTAMP]`` of the interactions an Interactions filter
    reads (each path's rows, duplicates across paths dropped), read like :func:`light_interactions`."""
    frames = []
    for path in paths:
        raw = _read(spark, path, INTERACTIONS, recorded, data_format, delimiter)
        event_type = F.col(EVENT_TYPE) if EVENT_TYPE in raw.columns else F.lit(None)
        frames.append(raw.select(F.trim(F.col(USER_ID)).alias(USER_ID), F.trim(F.col(ITEM_ID)).alias(ITEM_ID),
                                 event_type.cast("string").alias(EVENT_TYPE),
                                 F.col(TIMESTAMP).cast("string").alias(TIMESTAMP))
                      .where((F.col(USER_ID) != "") & (F.col(ITEM_ID) != "")))
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out.distinct() if len(frames) > 1 else out


def users_dataset(spark, path: str, recorded: dict, data_format: str, delimiter: str) -> DataFrame:
    """The users dataset with every attribute column (``IF CurrentUser``), IDs trimmed."""
    raw = _read(spark, path, USERS, recorded, data_format, delimiter)
    return raw.withColumn(USER_ID, F.trim(F.col(USER_ID))).where(F.col(USER_ID) != "")


def candidate_items(artifacts) -> Optional[DataFrame]:
    """``[ITEM_ID]`` of every item the model can return (its item map and stored lists), or None."""
    frames = [artifacts[name].select(ITEM_ID) for name in
              (catalogue.ITEM_MAP, catalogue.POPULAR_ITEMS, catalogue.TRENDING_ITEMS)
              if artifacts.get(name) is not None and ITEM_ID in artifacts[name].columns]
    if not frames:
        return None
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out.where(F.col(ITEM_ID).isNotNull()).distinct()


def compile_job_filter(spark, job_filter: JobFilter, requests: DataFrame, key: str,
                       datasets: dict, candidates: Optional[DataFrame]):
    """The :class:`batchrec.filters.Eligibility` of ``job_filter`` for ``requests`` (one row per
    ``key``, with ``filterValues`` when the lines carry their own); ``datasets`` holds only the
    kinds the filter reads. Lazy: nothing is scored here, but the fields are checked now.

    Raises:
        FilterError: a field the datasets do not have, or a value its operator cannot take.
    """
    from batchrec.filters.compile import compile_filter

    with logs.stage(log, "compile_filter", filter=job_filter.text):
        context = {"context": job_filter.context} if job_filter.context is not None else {}
        return compile_filter(spark, job_filter.parsed, job_filter.values, datasets, requests, key,
                              candidates=candidates, settings=job_filter.settings, **context)


FILTER_REQUEST_ERROR = "_filter_request_error"


def apply_job_filter(spark, job_filter: JobFilter, requests: DataFrame, key: str, per_line: bool,
                     read: dict, candidates: Optional[DataFrame]):
    """Compile ``job_filter`` for the usable ``requests`` and mark the lines it cannot serve.

    Args:
        requests: the job's request lines (``batchrec.batch.inputs`` columns); ``key`` must identify
            one answer (``USER_ID`` for recommend: a user on several lines gets one list).
        per_line: apply each line's ``"filterValues"``. A key on several lines with different
            values cannot get one answer for both: those lines get an ``error``.
        read: ``{kind: callable or None}`` reading each dataset; only the kinds the filter uses are
            read, and a kind it uses without a source is a usage error.
        candidates: ``[ITEM_ID]`` the model can return (None: the datasets' IDs).

    Returns:
        ``(eligibility, requests)``: the requests with the filter's per-line errors in ``error``.

    Raises:
        FilterError: a dataset the filter needs is missing, a field is unknown, or a value is bad.
    """
    from batchrec.filters import FilterError
    from batchrec.filters.compile import FILTER_VALUES, filter_values_column
    from batchrec.filters.eligibility import ERROR as FILTER_ERROR

    datasets = {}
    for kind in sorted(job_filter.kinds()):
        reader = read.get(kind)
        if reader is None:
            raise FilterError(f"the filter reads the {kind} dataset, but the solution version records "
                              f"none: pass --{kind}", job_filter.text)
        datasets[kind] = reader()
    usable = requests.where(F.col(inputs.ERROR).isNull() & F.col(key).isNotNull())
    conflicts = None
    if per_line:
        usable = usable.withColumn(FILTER_VALUES, filter_values_column(F.col(inputs.RAW)))
        as_text = F.coalesce(F.to_json(F.col(FILTER_VALUES)), F.lit("null"))
        conflicts = (usable.groupBy(key).agg(F.countDistinct(as_text).alias("_n")).where(F.col("_n") > 1)
                     .select(key, F.lit(f'"{FILTER_VALUES}" differ between this {inputs_key_name(key)}\'s '
                                        'lines, which share one answer').alias(FILTER_ERROR)))
        usable = usable.join(conflicts.select(key), key, "left_anti")
    columns = [key] + [c for c in (USER_ID, ITEM_ID) if c != key and c in usable.columns]
    columns += [FILTER_VALUES] if per_line else []
    filter_requests = usable.select(*columns).dropDuplicates([key])
    eligibility = compile_job_filter(spark, job_filter, filter_requests, key, datasets, candidates)
    errors = [e for e in (conflicts, eligibility.errors) if e is not None]
    if not errors:
        return eligibility, requests
    found = errors[0].select(key, F.col(FILTER_ERROR).alias(FILTER_REQUEST_ERROR))
    for other in errors[1:]:
        found = found.unionByName(other.select(key, F.col(FILTER_ERROR).alias(FILTER_REQUEST_ERROR)))
    marked = (requests.join(found.dropDuplicates([key]), key, "left")
              .withColumn(inputs.ERROR, F.coalesce(F.col(inputs.ERROR), F.col(FILTER_REQUEST_ERROR)))
              .drop(FILTER_REQUEST_ERROR))
    return eligibility, marked.select(*requests.columns)


def inputs_key_name(key: str) -> str:
    """How an error line names the request key (``userId`` for ``USER_ID``)."""
    return {USER_ID: inputs.JSON_USER_ID, ITEM_ID: inputs.JSON_ITEM_ID}.get(key, key)


def filter_values_lines(requests: DataFrame) -> int:
    """The usable request lines whose ``"filterValues"`` are given and not empty."""
    from batchrec.filters.compile import FILTER_VALUES

    values = F.to_json(F.try_variant_get(parse_object(F.col(inputs.RAW)), f"$.{FILTER_VALUES}", "variant"))
    return int(requests.where(F.col(inputs.ERROR).isNull() & F.col(inputs.RAW).contains(FILTER_VALUES)
                              & ~F.coalesce(values, F.lit("null")).isin("null", "{}")).count())
