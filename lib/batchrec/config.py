"""Layered configuration loaded once into frozen, typed dataclasses.

Precedence, lowest first::

    dataclass defaults < conf/base.toml < conf/<env>.toml < --config FILE
        < environment variables BATCHREC_<SECTION>__<KEY> < command-line flags

Every layer is checked against the dataclass schema: an unknown section or key, or a value of the
wrong type, raises :class:`~batchrec.errors.ConfigError` naming the key, where it came from and the
expected type. Nothing here imports pyspark.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import os
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from batchrec.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

ENV_PREFIX = "BATCHREC_"
ENV_SEPARATOR = "__"
CONF_DIR_ENV = "BATCHREC_CONF_DIR"
BASE_FILE = "base.toml"


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
class AlsSettings:
    """Spark MLlib ALS parameters, under MLlib's own names (``--param rank=64``).

    ``numUserBlocks``/``numItemBlocks`` of 0 mean "size to the cluster" (Spark's default parallelism).
    """

    rank: int = 64
    regParam: float = 0.1
    alpha: float = 1.0
    maxIter: int = 7
    seed: int = 42
    numUserBlocks: int = 0
    numItemBlocks: int = 0
    checkpointInterval: int = 10
    nonnegative: bool = False


@dataclass(frozen=True)
class PopularitySettings:
    """popularity-count: items ranked by the number of distinct users."""

    event_type: str = ""


@dataclass(frozen=True)
class TrendingSettings:
    """trending-now: growth of interactions between the latest window and the one before."""

    window_days: float = 7.0


@dataclass(frozen=True)
class SimsSettings:
    """sims: related items by co-occurrence (Personalize's SIMS names and defaults)."""

    popularity_discount_factor: float = 0.5
    min_cointeraction_count: int = 3
    similarity: str = "cooccurrence"
    num_neighbours: int = 100
    min_user_history_length_percentile: float = 0.005
    max_user_history_length_percentile: float = 0.995
    min_item_interaction_count_percentile: float = 0.01
    max_item_interaction_count_percentile: float = 1.0


@dataclass(frozen=True)
class SimilarItemsSettings:
    """similar-items: co-occurrence blended with item-metadata similarity (cold items too)."""

    min_cointeraction_count: int = 2
    interaction_shrinkage: float = 5.0
    num_neighbours: int = 100
    max_values_per_field: int = 200
    numeric_bins: int = 10
    min_user_history_length_percentile: float = 0.005
    max_user_history_length_percentile: float = 0.995
    min_item_interaction_count_percentile: float = 0.0
    max_item_interaction_count_percentile: float = 1.0


@dataclass(frozen=True)
class EaseSettings:
    """ease: Steck's closed-form item-item model, inverted on the driver."""

    regularization: float = 200.0
    max_items: int = 30000
    min_user_history_length_percentile: float = 0.0
    max_user_history_length_percentile: float = 1.0
    min_item_interaction_count_percentile: float = 0.0
    max_item_interaction_count_percentile: float = 1.0


@dataclass(frozen=True)
class SarSettings:
    """sar: time-decayed user affinity times an item similarity."""

    similarity: str = "jaccard"
    time_decay_half_life_days: float = 30.0
    min_cointeraction_count: int = 1
    num_neighbours: int = 500
    min_user_history_length_percentile: float = 0.0
    max_user_history_length_percentile: float = 1.0
    min_item_interaction_count_percentile: float = 0.0
    max_item_interaction_count_percentile: float = 1.0


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
class Settings:
    """The whole configuration of one batchrec invocation."""

    spark: SparkSettings = field(default_factory=SparkSettings)
    validation: ValidationSettings = field(default_factory=ValidationSettings)
    prepare: PrepareSettings = field(default_factory=PrepareSettings)
    als: AlsSettings = field(default_factory=AlsSettings)
    popularity: PopularitySettings = field(default_factory=PopularitySettings)
    trending: TrendingSettings = field(default_factory=TrendingSettings)
    sims: SimsSettings = field(default_factory=SimsSettings)
    similar_items: SimilarItemsSettings = field(default_factory=SimilarItemsSettings)
    ease: EaseSettings = field(default_factory=EaseSettings)
    sar: SarSettings = field(default_factory=SarSettings)
    recommend: RecommendSettings = field(default_factory=RecommendSettings)
    evaluate: EvaluateSettings = field(default_factory=EvaluateSettings)


def section_types() -> dict[str, type]:
    """Map each section name of :class:`Settings` to its dataclass."""
    hints = typing.get_type_hints(Settings)
    return {f.name: hints[f.name] for f in dataclasses.fields(Settings)}


def default_conf_dir() -> Optional[Path]:
    """Where ``base.toml`` and the environment overlays live.

    ``$BATCHREC_CONF_DIR`` wins; else ``./conf`` when it holds ``base.toml``; else the working
    directory itself (spark-submit ``--files conf/base.toml`` in cluster mode puts it there); else
    the repository's ``conf/`` next to ``lib/`` (a source checkout or an editable install).
    """
    if os.environ.get(CONF_DIR_ENV):
        return Path(os.environ[CONF_DIR_ENV])
    here = Path.cwd()
    for candidate in (here / "conf", here, Path(__file__).resolve().parents[2] / "conf"):
        if (candidate / BASE_FILE).is_file():
            return candidate
    return None


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
    sections = section_types()
    merged: dict[str, dict[str, Any]] = {name: {} for name in sections}
    conf_dir = conf_dir if conf_dir is not None else default_conf_dir()

    layers: list[tuple[str, Mapping[str, Any]]] = []
    if conf_dir is not None and (conf_dir / BASE_FILE).is_file():
        layers.append(_read_toml(conf_dir / BASE_FILE))
    if env:
        overlay = (conf_dir or Path("conf")) / f"{env}.toml"
        if not overlay.is_file():
            raise ConfigError(f"--env {env}: no configuration overlay at {overlay}")
        layers.append(_read_toml(overlay))
    if config_file is not None:
        if not Path(config_file).is_file():
            raise ConfigError(f"--config {config_file}: file not found")
        layers.append(_read_toml(Path(config_file)))
    layers.append(("environment", _environment_layer(environ if environ is not None else os.environ)))
    if overrides:
        layers.append(("command line", overrides))

    for source, data in layers:
        for section, values in data.items():
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
                merged[section][key] = _coerce(value, hints[key], f"{section}.{key}", source)

    return Settings(**{name: cls(**merged[name]) for name, cls in sections.items()})


def _read_toml(path: Path) -> tuple[str, Mapping[str, Any]]:
    try:
        with open(path, "rb") as handle:
            return str(path), tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc


def _environment_layer(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Collect ``BATCHREC_SECTION__KEY=value`` variables; values are read as TOML literals."""
    layer: dict[str, dict[str, Any]] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or ENV_SEPARATOR not in name:
            continue
        section, _, key = name[len(ENV_PREFIX):].partition(ENV_SEPARATOR)
        section = section.lower()
        hints = typing.get_type_hints(section_types().get(section, object))
        # Keys keep their schema spelling (MLlib's camelCase) whatever the variable's case.
        key = next((k for k in hints if k.lower() == key.lower()), key.lower())
        layer.setdefault(section, {})[key] = parse_literal(raw)
    return layer


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
