"""Layered configuration loaded once into frozen, typed dataclasses.

Precedence, lowest first::

    dataclass defaults < conf/base.toml < conf/<env>.toml < --config FILE
        < environment variables BATCHREC_<SECTION>__<KEY> < command-line flags

:func:`load_settings_with_origins` also says which layer set each value (``batchrec config show``).
Every layer is checked against the dataclass schema: an unknown section or key, a value of the
wrong type, or a value of the right type that cannot work (``csv_delimiter = ""``,
``shuffle_partitions = -3``, ``driver_memory = "lots"``: see :data:`CHECKS`) raises
:class:`~batchrec.errors.ConfigError` naming the key, where it came from and what was expected, before
Spark starts. Nothing here imports pyspark.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import math
import os
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from batchrec import catalogue
from batchrec.errors import ConfigError
from batchrec.filters.settings import FilterSettings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

ENV_PREFIX = "BATCHREC_"
ENV_SEPARATOR = "__"
CONF_DIR_ENV = "BATCHREC_CONF_DIR"
BASE_FILE = "base.toml"
# The checkout's conf/ beside lib/ (a source checkout or an editable install), and conf/*.toml as
# installed with the package (setup.py maps the repository's conf/ to batchrec/conf).
SOURCE_CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
PACKAGED_CONF_DIR = Path(__file__).resolve().parent / "conf"
DEFAULT_ORIGIN = "default"  # a value no layer sets: the dataclass default


def _frozen_map(**kwargs: Any) -> Mapping[str, Any]:
    return types.MappingProxyType(dict(kwargs))


@dataclass(frozen=True)
class SparkSettings:
    """How the embedded SparkSession is built (ignored under spark-submit, which owns the session)."""

    master: str = "local[*]"
    app_name: str = "batchrec"
    driver_memory: str = "4g"
    shuffle_partitions: int = 8
    packages: tuple[str, ...] = ()
    ivy_dir: str = ""
    log_level: str = "WARN"
    conf: Mapping[str, str] = field(default_factory=_frozen_map)


@dataclass(frozen=True)
class ValidationSettings:
    """Limits applied by ``batchrec validate`` and at the start of every job that reads datasets."""

    max_reject_fraction: float = 0.01
    min_interactions: int = 1000
    min_users_with_two_interactions: int = 25
    max_id_length: int = 256
    max_string_length: int = 1000
    csv_delimiter: str = ","


@dataclass(frozen=True)
class PrepareSettings:
    """Turns raw interactions into one confidence per (user, item) for training."""

    event_types: tuple[str, ...] = ()
    event_weights: Mapping[str, float] = field(default_factory=_frozen_map)
    event_value_threshold: Optional[float] = None
    lookback_days: Optional[int] = None
    half_life_days: Optional[float] = None
    max_user_history_length_percentile: float = 0.99


@dataclass(frozen=True)
class RecommendSettings:
    """Batch inference defaults for ``recommend`` and ``rank``."""

    num_results: int = 25
    exclude_seen: bool = True
    exclude_event_types: tuple[str, ...] = ()
    exploration_weight: float = 0.0
    exploration_item_age_cut_off: float = 30.0
    users_per_batch: int = 2048


@dataclass(frozen=True)
class SegmentSettings:
    """Batch segment jobs (``segment``): size, exclusions, how item scores make a segment score."""

    num_results: int = 25
    fraction: Optional[float] = None
    exclude_interacted: bool = False
    aggregation: str = "mean"
    users_per_batch: int = 2048


@dataclass(frozen=True)
class EvaluateSettings:
    """Hold-out protocols and metrics for ``evaluate`` and the metrics ``train`` stores."""

    protocol: str = "personalize"
    k: tuple[int, ...] = (5, 10, 25)
    seed: int = 42
    holdout_user_fraction: float = 0.1
    holdout_interaction_fraction: float = 0.1
    test_fraction: float = 0.25
    hpo_trials: int = 8
    hpo_metric: str = "ndcg@10"
    hpo_method: str = "random"


@dataclass(frozen=True)
class DynamoDBSettings:
    """``export-dynamodb``: endpoint, write budget, retries, item limits and TTL.

    Credentials are never settings: boto3's standard chain finds them (environment, shared
    credentials file, instance or container role).
    """

    endpoint_url: str = ""
    region: str = ""
    ttl_days: int = 7
    ttl_attribute: str = "ttl"
    write_rate: float = 1000.0
    write_rate_unit: str = "wcu"
    writers: int = 0
    retry_deadline_seconds: float = 120.0
    backoff_base_seconds: float = 0.05
    backoff_max_seconds: float = 5.0
    max_item_bytes: int = 400_000
    segment_page_size: int = 100
    segment_views: tuple[str, ...] = ("members", "user")
    verify_sample: int = 100
    progress_seconds: float = 30.0
    table_wait_seconds: float = 300.0
    connect_timeout_seconds: float = 10.0
    read_timeout_seconds: float = 30.0


def _recipe_section(spec) -> type:
    """A frozen dataclass for a recipe's configuration section, from its catalogue parameters."""
    fields = [(name, param.type, field(default=param.default)) for name, param in spec.params.items()]
    cls = dataclasses.make_dataclass(_class_name(spec.settings_section), fields, frozen=True)
    cls.__doc__ = f"[{spec.settings_section}]: defaults of the {spec.name} recipe ({spec.summary})."
    cls.__module__ = __name__
    return cls


def _class_name(section: str) -> str:
    return "".join(part.capitalize() for part in section.split("_")) + "Settings"


# Recipe sections come from the recipe catalogue, so a new recipe needs no edit here.
RECIPE_SECTIONS: dict[str, type] = {spec.settings_section: _recipe_section(spec)
                                    for spec in catalogue.RECIPES.values()}
AlsSettings = RECIPE_SECTIONS["als"]
PopularitySettings = RECIPE_SECTIONS["popularity"]
TrendingSettings = RECIPE_SECTIONS["trending"]

_FIXED_SECTIONS: dict[str, type] = {
    "spark": SparkSettings,
    "validation": ValidationSettings,
    "prepare": PrepareSettings,
    "recommend": RecommendSettings,
    "segment": SegmentSettings,
    "evaluate": EvaluateSettings,
    "dynamodb": DynamoDBSettings,
    "filters": FilterSettings,
}
Settings = dataclasses.make_dataclass(
    "Settings",
    [(name, cls, field(default_factory=cls)) for name, cls in {**_FIXED_SECTIONS, **RECIPE_SECTIONS}.items()],
    frozen=True,
)
Settings.__doc__ = "The whole configuration of one batchrec invocation: one frozen object per section."
Settings.__module__ = __name__


# ---------------------------------------------------------------------------------------------
# Range and pattern checks: a value of the right type that cannot work is a configuration error.
# Each check returns None when the value is fine, else what was expected.

Check = Callable[[Any], Optional[str]]
# Log levels Spark's setLogLevel knows; WARNING is accepted as Python's spelling of WARN.
SPARK_LOG_LEVELS = ("ALL", "DEBUG", "ERROR", "FATAL", "INFO", "OFF", "TRACE", "WARN", "WARNING")
PROTOCOL_NAMES = ("personalize", "temporal", "stratified-user", "stratified-item")
HPO_METHODS = ("random", "grid")
RANKED_METRIC_NAMES = ("precision", "recall", "ndcg", "mrr", "map", "hit_rate")
MAX_NUM_RESULTS = 500
_MASTER = re.compile(r"^(local(\[(\*|[1-9]\d*)(,\s*[1-9]\d*)?\])?|local-cluster\[\s*[1-9]\d*\s*,"
                     r"\s*[1-9]\d*\s*,\s*[1-9]\d*\s*\]|yarn|(spark|k8s|mesos)://\S+)$")
# JVM memory sizes as Spark reads them: a positive number with an optional unit (MiB when none).
_MEMORY = re.compile(r"^[1-9]\d*\s*([kmgtp]b?|b)?$", re.IGNORECASE)
_MAVEN = re.compile(r"^[A-Za-z0-9_.\-]+:[A-Za-z0-9_.\-]+:[A-Za-z0-9_.\-]+$")
_HPO_METRIC = re.compile(rf"^({'|'.join(RANKED_METRIC_NAMES)})@[1-9]\d*$")


def _number(low: Optional[float] = None, high: Optional[float] = None, low_open: bool = False,
            high_open: bool = False) -> Check:
    """A finite number within [low, high] (open ends when asked)."""
    lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
    hi = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
    expected = "a number " + " and ".join(x for x in (lo, hi) if x) if (lo or hi) else "a finite number"

    def check(value: Any) -> Optional[str]:
        if isinstance(value, float) and not math.isfinite(value):
            return expected
        if low is not None and (value < low or (low_open and value == low)):
            return expected
        if high is not None and (value > high or (high_open and value == high)):
            return expected
        return None

    return check


def _pattern(regex: "re.Pattern[str]", expected: str) -> Check:
    return lambda value: None if regex.match(value) else expected


def _one_of(choices: tuple[str, ...], case_sensitive: bool = True) -> Check:
    def check(value: str) -> Optional[str]:
        ok = value in choices if case_sensitive else value.upper() in choices
        return None if ok else f"one of {', '.join(choices)}"

    return check


def _not_blank(value: str) -> Optional[str]:
    return "a non-empty string" if not value.strip() else None


def _each(check: Check, non_empty: bool = False) -> Check:
    def each(values: Any) -> Optional[str]:
        if non_empty and not values:
            return "at least one value"
        items = values.values() if isinstance(values, Mapping) else values
        for item in items:
            problem = check(item)
            if problem:
                return f"every value to be {problem}"
        return None

    return each


def _delimiter(value: str) -> Optional[str]:
    if not value or any(c in value for c in '"\r\n'):
        return "a non-empty delimiter without quote or line-break characters, e.g. \",\""
    return None


def _checkpoint_interval(value: int) -> Optional[str]:
    return None if value == -1 or value >= 1 else "-1 (never) or a number of iterations >= 1"


# Spark properties whose impossible values would stop the JVM from starting.
_CONF_MEMORY = re.compile(r"^spark\.(driver|executor)\.(memory|memoryOverhead)$")
_CONF_COUNTS = ("spark.sql.shuffle.partitions", "spark.default.parallelism", "spark.executor.cores",
                "spark.executor.instances", "spark.driver.cores")


def _conf(value: Mapping[str, str]) -> Optional[str]:
    for key, setting in value.items():
        if not key.strip():
            return "non-empty property names"
        if _CONF_MEMORY.match(key) and not _MEMORY.match(setting.strip()):
            return f"{key} to be a JVM memory size such as 512m or 4g"
        if key in _CONF_COUNTS and not (setting.strip().isdigit() and int(setting) >= 1):
            return f"{key} to be a whole number >= 1"
    return None


def _named_filters(value: Mapping[str, str]) -> Optional[str]:
    from batchrec.filters import FilterError, parse_filter

    for name, expression in value.items():
        if not name.strip():
            return "non-empty filter names"
        try:
            parse_filter(expression)
        except FilterError as exc:
            return f"filter expressions; {name!r} does not parse: {exc}"
    return None


CHECKS: dict[str, Check] = {
    "spark.master": _pattern(_MASTER, "a Spark master URL: local, local[N], local[*], yarn, "
                                      "spark://HOST:PORT or k8s://URL"),
    "spark.app_name": _not_blank,
    "spark.driver_memory": _pattern(_MEMORY, "a JVM memory size such as 512m or 4g"),
    "spark.shuffle_partitions": _number(1),
    "spark.packages": _each(_pattern(_MAVEN, "Maven coordinates GROUP:ARTIFACT:VERSION")),
    "spark.log_level": _one_of(SPARK_LOG_LEVELS, case_sensitive=False),
    "spark.conf": _conf,
    "validation.max_reject_fraction": _number(0, 1),
    "validation.min_interactions": _number(0),
    "validation.min_users_with_two_interactions": _number(0),
    "validation.max_id_length": _number(1),
    "validation.max_string_length": _number(1),
    "validation.csv_delimiter": _delimiter,
    "prepare.event_types": _each(_not_blank),
    "prepare.event_weights": _each(_number(0)),
    "prepare.event_value_threshold": _number(),
    "prepare.lookback_days": _number(1),
    "prepare.half_life_days": _number(0, low_open=True),
    "prepare.max_user_history_length_percentile": _number(0, 1, low_open=True),
    # Recipe parameters are range-checked by the recipe catalogue (_check_recipe_range); MLlib's
    # "-1 or at least 1" is the one rule a range cannot say.
    "als.checkpointInterval": _checkpoint_interval,
    "recommend.num_results": _number(1, MAX_NUM_RESULTS),
    "recommend.exclude_event_types": _each(_not_blank),
    "recommend.exploration_weight": _number(0, 1),
    "recommend.exploration_item_age_cut_off": _number(0, low_open=True),
    "recommend.users_per_batch": _number(1),
    "segment.num_results": _number(1, 5_000_000),
    "segment.fraction": _number(0, 1, low_open=True),
    "segment.aggregation": _one_of(("mean", "max")),
    "segment.users_per_batch": _number(1),
    "evaluate.protocol": _one_of(PROTOCOL_NAMES),
    "evaluate.k": _each(_number(1), non_empty=True),
    "evaluate.holdout_user_fraction": _number(0, 1, low_open=True, high_open=True),
    "evaluate.holdout_interaction_fraction": _number(0, 1, low_open=True, high_open=True),
    "evaluate.test_fraction": _number(0, 1, low_open=True, high_open=True),
    "evaluate.hpo_trials": _number(1),
    "evaluate.hpo_metric": _pattern(_HPO_METRIC, "<metric>@<K>, metric one of "
                                                 f"{', '.join(RANKED_METRIC_NAMES)}, e.g. ndcg@10"),
    "evaluate.hpo_method": _one_of(HPO_METHODS),
    "filters.named": _named_filters,
}


def check_value(key: str, value: Any, source: str) -> None:
    """Apply :data:`CHECKS` to one typed value.

    Raises:
        ConfigError: naming the source, the key, the value and what was expected.
    """
    check = CHECKS.get(key)
    if check is None or value is None:
        return
    problem = check(value)
    if problem:
        shown = dict(value) if isinstance(value, Mapping) else list(value) if isinstance(value, tuple) else value
        raise ConfigError(f"{source}: '{key}' = {shown!r}; expected {problem}")


def section_types() -> dict[str, type]:
    """Map each section name of :class:`Settings` to its dataclass."""
    hints = typing.get_type_hints(Settings)
    return {f.name: hints[f.name] for f in dataclasses.fields(Settings)}


def default_conf_dir() -> Optional[Path]:
    """Where ``base.toml`` and the environment overlays live.

    ``$BATCHREC_CONF_DIR`` wins; else ``./conf`` when it holds ``base.toml``; else the working
    directory itself (spark-submit ``--files conf/base.toml`` in cluster mode puts it there); else
    the repository's ``conf/`` next to ``lib/`` (a source checkout or an editable install); else the
    copy installed with the package (``batchrec/conf``, from a wheel).
    """
    if os.environ.get(CONF_DIR_ENV):
        return Path(os.environ[CONF_DIR_ENV])
    here = Path.cwd()
    for candidate in (here / "conf", here, SOURCE_CONF_DIR, PACKAGED_CONF_DIR):
        if (candidate / BASE_FILE).is_file():
            return candidate
    return None


def layer_files(env: Optional[str] = None, config_file: Optional[Path] = None,
                conf_dir: Optional[Path] = None) -> list[tuple[str, Path]]:
    """``(label, path)`` of the configuration files :func:`load_settings` reads, lowest first.

    The labels name where each came from (``conf/base.toml``, ``--env NAME``, ``--config``), so the
    location guard can refuse an output that would overwrite one of them.
    """
    conf_dir = conf_dir if conf_dir is not None else default_conf_dir()
    files: list[tuple[str, Path]] = []
    if conf_dir is not None and (conf_dir / BASE_FILE).is_file():
        files.append((f"conf/{BASE_FILE}", conf_dir / BASE_FILE))
    if env:
        files.append((f"--env {env}", (conf_dir or Path("conf")) / f"{env}.toml"))
    if config_file is not None:
        files.append(("--config", Path(config_file)))
    return files


@dataclass(frozen=True)
class Layer:
    """One configuration layer: where it comes from and the values it sets.

    Attributes:
        source: how errors name it: a file's path, ``environment`` or ``command line``.
        label: how ``config show`` names it: ``base.toml``, ``conf/<env>.toml``, ``--config``,
            ``environment``, ``command line``.
        values: ``{section: {key: value}}`` as read (checked when merged).
        origins: ``{"section.key": origin}`` where a value's origin is finer than the layer (the
            environment variable that set it).
        path: the file, for file layers.
    """

    source: str
    label: str
    values: Mapping[str, Any]
    origins: Mapping[str, str] = field(default_factory=_frozen_map)
    path: Optional[Path] = None

    def origin(self, key: str) -> str:
        """Where ``section.key`` came from in this layer, for ``config show``."""
        if key in self.origins:
            return self.origins[key]
        return self.label


def read_layers(
    env: Optional[str] = None,
    config_file: Optional[Path] = None,
    overrides: Optional[Mapping[str, Mapping[str, Any]]] = None,
    environ: Optional[Mapping[str, str]] = None,
    conf_dir: Optional[Path] = None,
) -> list[Layer]:
    """Read every configuration layer, lowest first (arguments as for :func:`load_settings`).

    Raises:
        ConfigError: an overlay or ``--config`` file is missing, is a folder or is not TOML.
    """
    conf_dir = conf_dir if conf_dir is not None else default_conf_dir()
    layers: list[Layer] = []
    if conf_dir is not None and (conf_dir / BASE_FILE).is_file():
        layers.append(_file_layer(conf_dir / BASE_FILE, BASE_FILE))
    if env:
        overlay = (conf_dir or Path("conf")) / f"{env}.toml"
        if not overlay.is_file():
            raise ConfigError(f"--env {env}: no configuration overlay at {overlay}")
        layers.append(_file_layer(overlay, f"conf/{env}.toml"))
    if config_file is not None:
        if Path(config_file).is_dir():
            raise ConfigError(f"--config {config_file}: is a folder; expected a TOML file")
        if not Path(config_file).is_file():
            raise ConfigError(f"--config {config_file}: file not found")
        layers.append(_file_layer(Path(config_file), "--config"))
    values, names = _environment_layer(environ if environ is not None else os.environ)
    layers.append(Layer("environment", "environment", values, types.MappingProxyType(names)))
    if overrides:
        layers.append(Layer("command line", "command line", overrides))
    return layers


def _file_layer(path: Path, label: str) -> Layer:
    source, values = _read_toml(path)
    return Layer(source, label, values, path=path)


def load_settings(
    env: Optional[str] = None,
    config_file: Optional[Path] = None,
    overrides: Optional[Mapping[str, Mapping[str, Any]]] = None,
    environ: Optional[Mapping[str, str]] = None,
    conf_dir: Optional[Path] = None,
) -> Settings:
    """Load and check every configuration layer and return one frozen :class:`Settings`.

    Args:
        env: name of an overlay ``conf/<env>.toml``; it must exist when given.
        config_file: an extra TOML file applied after the overlays.
        overrides: ``{section: {key: value}}`` from command-line flags, applied last.
        environ: the environment to read ``BATCHREC_*`` variables from (default ``os.environ``).
        conf_dir: folder holding ``base.toml`` (default :func:`default_conf_dir`).

    Raises:
        ConfigError: a file is missing or not TOML, or a key or value does not fit the schema.
    """
    return merge_layers(read_layers(env, config_file, overrides, environ, conf_dir))[0]


def load_settings_with_origins(
    env: Optional[str] = None,
    config_file: Optional[Path] = None,
    overrides: Optional[Mapping[str, Mapping[str, Any]]] = None,
    environ: Optional[Mapping[str, str]] = None,
    conf_dir: Optional[Path] = None,
) -> tuple[Settings, dict[str, str], list[Layer]]:
    """:func:`load_settings`, plus where each value came from and the layers read.

    Returns:
        ``(settings, origins, layers)``: ``origins`` maps every ``section.key`` of the schema to
        the layer that set it last (``base.toml``, ``conf/<env>.toml``, ``--config``, the
        ``BATCHREC_<SECTION>__<KEY>`` variable, ``command line``) or ``default`` when no layer sets
        it; ``layers`` say which files those are.
    """
    layers = read_layers(env, config_file, overrides, environ, conf_dir)
    settings, origins = merge_layers(layers)
    return settings, origins, layers


def merge_layers(layers: list[Layer]) -> tuple[Settings, dict[str, str]]:
    """Check every layer against the schema and merge them, later layers winning.

    Returns:
        The settings and ``{"section.key": origin}`` for every key of the schema.
    """
    sections = section_types()
    merged: dict[str, dict[str, Any]] = {name: {} for name in sections}
    origins = {f"{name}.{key}": DEFAULT_ORIGIN for name, cls in sections.items()
               for key in typing.get_type_hints(cls)}
    for layer in layers:
        source = layer.source
        for section, values in layer.values.items():
            if section not in sections:
                raise ConfigError(
                    f"{source}: unknown section [{section}]; expected one of {sorted(sections)}"
                )
            if not isinstance(values, Mapping):
                raise ConfigError(f"{source}: [{section}] must be a table of keys")
            hints = typing.get_type_hints(sections[section])
            for key, value in values.items():
                if key not in hints:
                    raise ConfigError(
                        f"{source}: unknown key '{section}.{key}'; "
                        f"expected one of {sorted(hints)}"
                    )
                typed = _coerce(value, hints[key], f"{section}.{key}", source)
                check_value(f"{section}.{key}", typed, source)
                _check_recipe_range(section, key, typed, source)
                merged[section][key] = typed
                origins[f"{section}.{key}"] = layer.origin(f"{section}.{key}")

    settings = Settings(**{name: cls(**merged[name]) for name, cls in sections.items()})
    return settings, origins


def _check_recipe_range(section: str, key: str, value: Any, source: str) -> None:
    """A recipe parameter outside its catalogue range is a configuration error (exit 2)."""
    from batchrec.errors import UsageError

    spec = next((s for s in catalogue.RECIPES.values() if s.settings_section == section), None)
    if spec is None:
        return
    try:
        spec.params[key].check(f"{section}.{key}", value)
    except UsageError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _read_toml(path: Path) -> tuple[str, Mapping[str, Any]]:
    """Parse one TOML file; every way it can be unreadable is a one-line ConfigError."""
    try:
        data = path.read_bytes()
    except IsADirectoryError as exc:
        raise ConfigError(f"{path}: is a folder; expected a TOML file") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file ({exc.strerror or exc})") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                          "expected a TOML file saved as UTF-8") from exc
    try:
        return str(path), tomllib.loads(text.removeprefix("\ufeff"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc


def _environment_layer(environ: Mapping[str, str]) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Collect ``BATCHREC_SECTION__KEY=value`` variables; values are read as TOML literals.

    Returns:
        ``({section: {key: value}}, {"section.key": variable name})``.
    """
    layer: dict[str, dict[str, Any]] = {}
    names: dict[str, str] = {}
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or ENV_SEPARATOR not in name:
            continue
        section, _, key = name[len(ENV_PREFIX):].partition(ENV_SEPARATOR)
        section = section.lower()
        hints = typing.get_type_hints(section_types().get(section, object))
        # Keys keep their schema spelling (MLlib's camelCase) whatever the variable's case.
        key = next((k for k in hints if k.lower() == key.lower()), key.lower())
        layer.setdefault(section, {})[key] = parse_literal(raw)
        names[f"{section}.{key}"] = name
    return layer, names


def parse_literal(raw: str) -> Any:
    """Read ``raw`` as a TOML value (``64``, ``0.1``, ``true``, ``["a","b"]``), else as a string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _type_name(expected: Any) -> str:
    return getattr(expected, "__name__", None) or str(expected).replace("typing.", "")


def _coerce(value: Any, expected: Any, key: str, source: str) -> Any:
    """Check ``value`` against the annotation ``expected`` and return it in the dataclass's form."""
    origin = typing.get_origin(expected)
    args = typing.get_args(expected)

    def fail() -> ConfigError:
        return ConfigError(
            f"{source}: '{key}' = {value!r} has type {type(value).__name__}; "
            f"expected {_type_name(expected)}"
        )

    if origin is typing.Union:  # Optional[X]
        inner = [a for a in args if a is not type(None)][0]
        return None if value is None else _coerce(value, inner, key, source)
    if expected is bool:
        if isinstance(value, bool):
            return value
        raise fail()
    if expected is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise fail()
    if expected is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise fail()
    if expected is str:
        if isinstance(value, str):
            return value
        raise fail()
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise fail()
        return tuple(_coerce(v, args[0], f"{key}[{i}]", source) for i, v in enumerate(value))
    if origin is collections.abc.Mapping:
        if not isinstance(value, Mapping):
            raise fail()
        value_type = args[1] if args else Any
        return types.MappingProxyType(
            {
                str(k): (v if value_type is Any else _coerce(v, value_type, f"{key}.{k}", source))
                for k, v in value.items()
            }
        )
    raise fail()  # pragma: no cover - a schema type this module does not know


def settings_as_dict(settings: Settings) -> dict[str, dict[str, Any]]:
    """Plain ``{section: {key: value}}`` view, e.g. for logging or storing with a model."""
    out: dict[str, dict[str, Any]] = {}
    for section in dataclasses.fields(settings):
        values = getattr(settings, section.name)
        out[section.name] = {
            f.name: (dict(v) if isinstance(v := getattr(values, f.name), Mapping) else
                     list(v) if isinstance(v, tuple) else v)
            for f in dataclasses.fields(values)
        }
    return out
