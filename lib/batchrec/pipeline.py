"""The nightly pipeline, planned: ``batchrec run PIPELINE.toml --run-date D``.

Pure planning, no Spark: :func:`load` parses and checks the pipeline file into frozen dataclasses
(every mistake is a :class:`~batchrec.errors.ConfigError`, exit 2, naming the file and the key),
:func:`train_due` decides whether a solution needs a new version, :func:`prerequisites` says which
stages a stage waits for. ``batchrec.commands.run`` executes the plan in one SparkSession.

The stages, always in this order (a pipeline runs any subset of them)::

    validate -> train -> recommend -> related -> segment -> export-dynamodb

Per run date the pipeline keeps a run folder ``<runs>/<run date>/`` holding ``state.json`` (each
stage's completion, written after every stage: a failed run resumes at the stage that failed),
``manifest.json`` (inputs, versions, outputs, durations, rejects) and ``_SUCCESS``, written last.
The file format is documented in ``examples/pipeline.toml``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from batchrec import catalogue
from batchrec.errors import ConfigError, UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

VALIDATE, TRAIN, RECOMMEND, RELATED, SEGMENT, EXPORT = (
    "validate", "train", "recommend", "related", "segment", "export-dynamodb")
STAGES = (VALIDATE, TRAIN, RECOMMEND, RELATED, SEGMENT, EXPORT)
BATCH_STAGES = (RECOMMEND, RELATED, SEGMENT)
# What a batch stage's solution must be able to answer (see batchrec.catalogue).
CAPABILITY = {RECOMMEND: (catalogue.ITEMS_FOR_USER, "recommend items for a user"),
              RELATED: (catalogue.ITEMS_FOR_ITEM, "relate items to an item"),
              SEGMENT: (catalogue.USERS_FOR_ITEM, "find users for an item")}

RUN_DATE_PLACEHOLDER = "{run_date}"
MANIFEST_FILE = "manifest.json"
STATE_FILE = "state.json"
SUCCESS_FILE = "_SUCCESS"
VALIDATION_REPORT_FILE = "validation.json"
DEFAULT_PROGRESS_SECONDS = 30.0
FORMATS = ("auto", "csv", "parquet", "delta", "json")

_SECTIONS = ("pipeline", "settings", "datasets", "validate", "solutions") + BATCH_STAGES + (EXPORT,)
_PIPELINE_KEYS = ("runs", "stages", "progress_seconds", "config", "env")
_DATASET_KEYS = ("interactions", "items", "users", "format", "schemas", "renames")
_VALIDATE_KEYS = ("rejects", "report")
_SOLUTION_KEYS = ("recipe", "path", "max_version_age_days", "params", "hpo", "evaluate")
_BATCH_KEYS = ("solution", "output", "jsonl", "input")
_EXPORT_KEYS = ("table", "from", "endpoint_url", "region", "ttl_days", "create_table", "allow_older_run")


@dataclass(frozen=True)
class Datasets:
    """``[datasets]``: what validate and train read (and batch stages re-read when fresher)."""

    interactions: str
    items: Optional[str] = None
    users: Optional[str] = None
    format: str = "auto"
    schemas: tuple[str, ...] = ()
    renames: tuple[tuple[str, str], ...] = ()

    def paths(self) -> dict[str, str]:
        return {k: v for k, v in (("interactions", self.interactions), ("items", self.items),
                                  ("users", self.users)) if v}


@dataclass(frozen=True)
class ValidateStage:
    """``[validate]``: the rejects Delta table (optional) and the JSON report (in the run folder)."""

    rejects: Optional[str]
    report: str


@dataclass(frozen=True)
class Solution:
    """``[solutions.NAME]``: one solution the pipeline trains and batch stages score with."""

    name: str
    recipe: str
    path: str
    max_version_age_days: int = 0
    params: tuple[tuple[str, Any], ...] = ()
    hpo: bool = False
    evaluate: bool = False


@dataclass(frozen=True)
class BatchStage:
    """``[recommend]``, ``[related]`` or ``[segment]``: a batch job on one solution."""

    name: str
    solution: str  # a key of Pipeline.solutions
    output: str
    jsonl: Optional[str] = None
    input: Optional[str] = None


@dataclass(frozen=True)
class ExportStage:
    """``[export-dynamodb]``: the batch outputs of this run into one DynamoDB(-compatible) table."""

    table: str
    sources: tuple[str, ...]
    endpoint_url: Optional[str] = None
    region: Optional[str] = None
    ttl_days: Optional[int] = None
    create_table: bool = True
    allow_older_run: bool = False


@dataclass(frozen=True)
class Pipeline:
    """One pipeline file, checked, for one run date (``{run_date}`` in paths already replaced)."""

    path: str  # the pipeline file, absolute
    digest: str  # sha256 of its bytes (recorded in the state and the manifest)
    run_date: dt.date
    stages: tuple[str, ...]
    runs: str
    progress_seconds: float = DEFAULT_PROGRESS_SECONDS
    config: Optional[str] = None
    env: Optional[str] = None
    settings: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    datasets: Optional[Datasets] = None
    validate: Optional[ValidateStage] = None
    solutions: Mapping[str, Solution] = dataclasses.field(default_factory=dict)
    batch: Mapping[str, BatchStage] = dataclasses.field(default_factory=dict)
    export: Optional[ExportStage] = None

    @property
    def run_dir(self) -> str:
        """``<runs>/<run date>``: the state file, the manifest and ``_SUCCESS``."""
        return _join(self.runs, self.run_date.isoformat())

    @property
    def state_path(self) -> str:
        return _join(self.run_dir, STATE_FILE)

    @property
    def manifest_path(self) -> str:
        return _join(self.run_dir, MANIFEST_FILE)

    @property
    def success_path(self) -> str:
        return _join(self.run_dir, SUCCESS_FILE)

    def solutions_used(self) -> tuple[str, ...]:
        """Names of the solutions the batch stages of this pipeline score with, in stage order."""
        names = [self.batch[s].solution for s in BATCH_STAGES if s in self.stages]
        return tuple(dict.fromkeys(names))

    def solutions_trained(self) -> tuple[str, ...]:
        """Names of the solutions the train stage trains: every one in ``[solutions]``."""
        return tuple(self.solutions) if TRAIN in self.stages else ()

    def describe(self) -> dict:
        """The plan as plain data (``--dry-run`` prints it)."""
        stages: dict[str, Any] = {}
        for stage in self.stages:
            if stage == VALIDATE:
                stages[stage] = {"datasets": self.datasets.paths(), "rejects": self.validate.rejects,
                                 "report": self.validate.report}
            elif stage == TRAIN:
                stages[stage] = {name: {"recipe": s.recipe, "path": s.path,
                                        "max_version_age_days": s.max_version_age_days}
                                 for name, s in self.solutions.items()}
            elif stage in BATCH_STAGES:
                b = self.batch[stage]
                stages[stage] = {"solution": self.solutions[b.solution].path, "output": b.output,
                                 "jsonl": b.jsonl, "input": b.input}
            else:
                stages[stage] = {"table": self.export.table, "from": list(self.export.sources)}
        return {"pipeline": self.path, "run_date": self.run_date.isoformat(), "run_dir": self.run_dir,
                "stages": stages}


def load(path: Path | str, run_date: dt.date) -> Pipeline:
    """Read and check the pipeline file ``path`` for ``run_date``.

    Relative dataset and output paths stay relative (to the working directory, like every batchrec
    option); ``config`` is relative to the pipeline file.

    Raises:
        ConfigError: the file is missing or not TOML, or a section, key or value is wrong; the
            message names the file and the key (exit 2, before Spark starts).
    """
    path = Path(path)
    where = str(path)
    if path.is_dir():
        raise ConfigError(f"{where}: is a folder; expected a pipeline TOML file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{where}: pipeline file not found") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read the pipeline file ({exc.strerror or exc})") from None
    try:
        raw = tomllib.loads(data.decode("utf-8").removeprefix("\ufeff"))
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: not UTF-8 text; expected a TOML file saved as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML ({exc})") from None
    return _parse(raw, where, str(path.resolve()), hashlib.sha256(data).hexdigest(), run_date)


def _parse(raw: Mapping[str, Any], where: str, absolute: str, digest: str, run_date: dt.date) -> Pipeline:
    r = _Reader(where, run_date)
    unknown = sorted(set(raw) - set(_SECTIONS))
    if unknown:
        raise ConfigError(f"{where}: unknown section [{unknown[0]}]; expected some of "
                          f"{', '.join(f'[{s}]' for s in _SECTIONS)}")
    head = r.table(raw, "pipeline", _PIPELINE_KEYS, required=True)
    runs = r.path(head, "pipeline", "runs", required=True)
    progress = r.number(head, "pipeline", "progress_seconds", DEFAULT_PROGRESS_SECONDS, low=0.0)
    config = r.string(head, "pipeline", "config")
    if config is not None:
        config = str((Path(absolute).parent / config).resolve()) if not Path(config).is_absolute() else config
    env = r.string(head, "pipeline", "env")
    settings = raw.get("settings", {})
    if not isinstance(settings, Mapping) or any(not isinstance(v, Mapping) for v in settings.values()):
        raise ConfigError(f"{where}: [settings] must hold configuration sections, e.g. "
                          "[settings.validation] min_interactions = 100")

    datasets = _datasets(r, raw)
    solutions = _solutions(r, raw)
    batch = {name: _batch(r, raw, name, solutions) for name in BATCH_STAGES if name in raw}

    if "stages" in head:
        stages = r.string_list(head, "pipeline", "stages")
        for name in stages:
            if name not in STAGES:
                raise ConfigError(f"{where}: [pipeline] stages: unknown stage {name!r}; expected some of "
                                  f"{', '.join(STAGES)}")
        if len(set(stages)) != len(stages):
            raise ConfigError(f"{where}: [pipeline] stages lists a stage twice: {stages}")
        if list(stages) != sorted(stages, key=STAGES.index):
            raise ConfigError(f"{where}: [pipeline] stages = {list(stages)}: stages run in the order "
                              f"{', '.join(STAGES)}; list them in that order")
        if not stages:
            raise ConfigError(f"{where}: [pipeline] stages is empty; expected at least one stage")
    else:  # every stage whose section is there
        present = {VALIDATE: datasets is not None, TRAIN: datasets is not None and bool(solutions),
                   EXPORT: EXPORT in raw, **{name: name in batch for name in BATCH_STAGES}}
        stages = tuple(s for s in STAGES if present[s])
        if not stages:
            raise ConfigError(f"{where}: no stage configured; add [datasets] (validate), "
                              "[solutions.NAME] (train), [recommend], [related], [segment] or "
                              "[export-dynamodb]")
    stages = tuple(stages)

    if (VALIDATE in stages or TRAIN in stages) and datasets is None:
        need = VALIDATE if VALIDATE in stages else TRAIN
        raise ConfigError(f"{where}: stage {need} needs [datasets] with at least interactions = PATH")
    if TRAIN in stages and not solutions:
        raise ConfigError(f"{where}: stage train needs at least one [solutions.NAME] with recipe and path")
    for name in BATCH_STAGES:
        if name in stages and name not in batch:
            raise ConfigError(f"{where}: stage {name} needs a [{name}] section with solution and output")
    validate = None
    section = r.table(raw, "validate", _VALIDATE_KEYS)
    if VALIDATE in stages:
        report = r.path(section, "validate", "report") or _join(runs, run_date.isoformat(),
                                                                 VALIDATION_REPORT_FILE)
        validate = ValidateStage(rejects=r.path(section, "validate", "rejects"), report=report)
    export = _export(r, raw, stages, batch) if EXPORT in stages else None
    if EXPORT in raw and EXPORT not in stages:
        # Still checked (a typo fails today), against every batch section of the file.
        _export(r, raw, tuple(s for s in BATCH_STAGES if s in batch) + (EXPORT,), batch)
    return Pipeline(path=absolute, digest=digest, run_date=run_date, stages=stages, runs=runs,
                    progress_seconds=progress, config=config, env=env,
                    settings=types.MappingProxyType({k: dict(v) for k, v in settings.items()}),
                    datasets=datasets, validate=validate, solutions=types.MappingProxyType(solutions),
                    batch=types.MappingProxyType(batch), export=export)


def _datasets(r: "_Reader", raw: Mapping[str, Any]) -> Optional[Datasets]:
    if "datasets" not in raw:
        return None
    section = r.table(raw, "datasets", _DATASET_KEYS)
    fmt = r.string(section, "datasets", "format") or "auto"
    if fmt not in FORMATS:
        raise ConfigError(f"{r.where}: [datasets] format = {fmt!r}; expected one of {', '.join(FORMATS)}")
    renames = section.get("renames", {})
    if not isinstance(renames, Mapping) or not all(isinstance(k, str) and isinstance(v, str) and k.strip()
                                                   and v.strip() for k, v in renames.items()):
        raise ConfigError(f"{r.where}: [datasets] renames must be a table of SOURCE = \"TARGET\" column "
                          "names, e.g. renames = { userId = \"USER_ID\" }")
    return Datasets(interactions=r.path(section, "datasets", "interactions", required=True),
                    items=r.path(section, "datasets", "items"), users=r.path(section, "datasets", "users"),
                    format=fmt, schemas=tuple(r.string_list(section, "datasets", "schemas")),
                    renames=tuple(renames.items()))


def _solutions(r: "_Reader", raw: Mapping[str, Any]) -> dict[str, Solution]:
    table = raw.get("solutions", {})
    if not isinstance(table, Mapping) or any(not isinstance(v, Mapping) for v in table.values()):
        raise ConfigError(f"{r.where}: [solutions] must hold one table per solution, e.g. "
                          "[solutions.home] recipe = \"user-personalization\", path = \"...\"")
    found = {}
    for name, section in table.items():
        key = f"solutions.{name}"
        r.keys(section, key, _SOLUTION_KEYS)
        recipe = r.string(section, key, "recipe", required=True)
        if recipe not in catalogue.RECIPES:
            raise ConfigError(f"{r.where}: [{key}] recipe = {recipe!r}; expected one of "
                              f"{', '.join(catalogue.names())}")
        params = section.get("params", {})
        if not isinstance(params, Mapping):
            raise ConfigError(f"{r.where}: [{key}] params must be a table, e.g. params = {{ rank = 32 }}")
        try:
            catalogue.resolve_params(recipe, None, dict(params))
        except UsageError as exc:
            raise ConfigError(f"{r.where}: [{key}] params: {exc}") from None
        found[name] = Solution(
            name=name, recipe=recipe, path=r.path(section, key, "path", required=True),
            max_version_age_days=int(r.number(section, key, "max_version_age_days", 0, low=0, integer=True)),
            params=tuple(params.items()), hpo=r.boolean(section, key, "hpo", False),
            evaluate=r.boolean(section, key, "evaluate", False))
    paths = [s.path for s in found.values()]
    if len(set(paths)) != len(paths):
        raise ConfigError(f"{r.where}: two [solutions.*] share one path; each solution needs its own folder")
    return found


def _batch(r: "_Reader", raw: Mapping[str, Any], name: str, solutions: Mapping[str, Solution]) -> BatchStage:
    section = r.table(raw, name, _BATCH_KEYS)
    solution = r.string(section, name, "solution", required=True)
    if solution not in solutions:
        raise ConfigError(f"{r.where}: [{name}] solution = {solution!r}: no [solutions.{solution}]; "
                          f"defined: {', '.join(solutions) or 'none'}")
    capability, what = CAPABILITY[name]
    try:
        catalogue.require(solutions[solution].recipe, capability, what)
    except UsageError as exc:
        raise ConfigError(f"{r.where}: [{name}] solution = {solution!r}: {exc}") from None
    return BatchStage(name=name, solution=solution, output=r.path(section, name, "output", required=True),
                      jsonl=r.path(section, name, "jsonl"), input=r.path(section, name, "input"))


def _export(r: "_Reader", raw: Mapping[str, Any], stages: Sequence[str],
            batch: Mapping[str, BatchStage]) -> ExportStage:
    if EXPORT not in raw:
        raise ConfigError(f"{r.where}: stage {EXPORT} needs an [{EXPORT}] section with table = NAME")
    section = r.table(raw, EXPORT, _EXPORT_KEYS)
    table = r.string(section, EXPORT, "table", required=True)
    from batchrec.sinks.dynamodb_table import check_table_name

    try:
        check_table_name(table)
    except UsageError as exc:
        raise ConfigError(f"{r.where}: [{EXPORT}] {str(exc).removeprefix('--')}") from None
    available = [s for s in BATCH_STAGES if s in stages]
    sources = tuple(r.string_list(section, EXPORT, "from")) if "from" in section else tuple(available)
    for source in sources:
        if source not in BATCH_STAGES:
            raise ConfigError(f"{r.where}: [{EXPORT}] from: {source!r} is not a batch stage; expected "
                              f"some of {', '.join(BATCH_STAGES)}")
        if source not in available:
            raise ConfigError(f"{r.where}: [{EXPORT}] from: stage {source!r} is not part of this "
                              f"pipeline (stages: {', '.join(stages)})")
    if not sources:
        raise ConfigError(f"{r.where}: [{EXPORT}] has nothing to export: the pipeline has none of the "
                          f"stages {', '.join(BATCH_STAGES)}")
    ttl = section.get("ttl_days")
    return ExportStage(
        table=table, sources=tuple(dict.fromkeys(sources)),
        endpoint_url=r.string(section, EXPORT, "endpoint_url"), region=r.string(section, EXPORT, "region"),
        ttl_days=None if ttl is None else int(r.number(section, EXPORT, "ttl_days", 0, low=0, integer=True)),
        create_table=r.boolean(section, EXPORT, "create_table", True),
        allow_older_run=r.boolean(section, EXPORT, "allow_older_run", False))


class _Reader:
    """Typed access to the parsed TOML with one-line ConfigErrors naming the file and the key."""

    def __init__(self, where: str, run_date: dt.date):
        self.where = where
        self.run_date = run_date

    def fail(self, section: str, key: str, value: Any, expected: str) -> ConfigError:
        return ConfigError(f"{self.where}: [{section}] {key} = {value!r}; expected {expected}")

    def keys(self, section: Mapping[str, Any], name: str, allowed: Sequence[str]) -> None:
        unknown = sorted(set(section) - set(allowed))
        if unknown:
            raise ConfigError(f"{self.where}: unknown key '{unknown[0]}' in [{name}]; expected some of "
                              f"{', '.join(allowed)}")

    def table(self, raw: Mapping[str, Any], name: str, allowed: Sequence[str],
              required: bool = False) -> Mapping[str, Any]:
        if name not in raw:
            if required:
                raise ConfigError(f"{self.where}: no [{name}] section; expected at least "
                                  f"[{name}] runs = \"FOLDER\" (where run manifests go)")
            return {}
        section = raw[name]
        if not isinstance(section, Mapping):
            raise ConfigError(f"{self.where}: [{name}] must be a table of keys")
        self.keys(section, name, allowed)
        return section

    def string(self, section: Mapping[str, Any], name: str, key: str, required: bool = False) -> Optional[str]:
        if key not in section:
            if required:
                raise ConfigError(f"{self.where}: [{name}] needs {key} = ...")
            return None
        value = section[key]
        if not isinstance(value, str) or not value.strip():
            raise self.fail(name, key, value, "a non-empty string")
        return value

    def path(self, section: Mapping[str, Any], name: str, key: str, required: bool = False) -> Optional[str]:
        """A path or URI; ``{run_date}`` becomes the run date (``YYYY-MM-DD``)."""
        value = self.string(section, name, key, required)
        return None if value is None else value.replace(RUN_DATE_PLACEHOLDER, self.run_date.isoformat())

    def string_list(self, section: Mapping[str, Any], name: str, key: str) -> list[str]:
        value = section.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.fail(name, key, value, "a list of non-empty strings")
        return [v.replace(RUN_DATE_PLACEHOLDER, self.run_date.isoformat()) for v in value]

    def boolean(self, section: Mapping[str, Any], name: str, key: str, default: bool) -> bool:
        value = section.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(name, key, value, "true or false")
        return value

    def number(self, section: Mapping[str, Any], name: str, key: str, default: float,
               low: Optional[float] = None, integer: bool = False) -> float:
        value = section.get(key, default)
        ok = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok or (low is not None and value < low):
            kind = "a whole number" if integer else "a number"
            raise self.fail(name, key, value, f"{kind}{f' >= {low:g}' if low is not None else ''}")
        return value


def _join(*parts: str) -> str:
    return "/".join([parts[0].rstrip("/")] + [p.strip("/") for p in parts[1:]])


# ------------------------------------------------------------------------------------------------
# decisions


def train_due(solution: Solution, run_date: dt.date, versions: Sequence[tuple[str, Optional[str]]],
              force: bool = False) -> tuple[bool, str, Optional[str]]:
    """Whether ``solution`` needs a new version for ``run_date``.

    Args:
        versions: ``(version id, run date YYYY-MM-DD or None)`` of its complete versions.
        force: ``--force``: a version trained for this very run date is replaced.

    Returns:
        ``(due, reason, version)``: ``version`` is the newest version usable for the run date (the one
        batch stages use when nothing is trained), or None.

    Due when there is no version for a run date on or before ``run_date`` (a backfill never uses a
    newer model), when the newest one records no run date, or when it is more than
    ``max_version_age_days`` days older than ``run_date``.
    """
    day = run_date.isoformat()
    eligible = [(d or "", v) for v, d in versions if (d or "") <= day]
    if not eligible:
        return True, f"no version trained for a run date on or before {day}", None
    trained_for, version = max(eligible)
    if not trained_for:
        return True, f"newest version {version} records no run date", version
    age = (run_date - dt.date.fromisoformat(trained_for)).days
    limit = solution.max_version_age_days
    if force and age == 0:
        return True, f"--force: version {version} of this run date is replaced", version
    if age > limit:
        return True, f"newest version {version} is {age} days old (max_version_age_days = {limit})", version
    return False, (f"version {version} (trained for {trained_for}) is {age} days old "
                   f"(max_version_age_days = {limit})"), version


def prerequisites(plan: Pipeline, stage: str) -> tuple[str, ...]:
    """The stages of ``plan`` that must be complete before ``stage`` runs (``--stage``)."""
    if stage == VALIDATE:
        return ()
    if stage == TRAIN:
        return (VALIDATE,) if VALIDATE in plan.stages else ()
    if stage in BATCH_STAGES:
        if TRAIN in plan.stages:
            return (TRAIN,)
        return (VALIDATE,) if VALIDATE in plan.stages else ()
    return plan.export.sources if plan.export else ()
