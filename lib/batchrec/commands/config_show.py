"""``batchrec config show``: the effective configuration and the layer each value came from.

The layers are those every job reads (``batchrec.config``): ``base.toml``, ``conf/<env>.toml``
(``--env`` or ``BATCHREC_ENV``), ``--config FILE`` and the ``BATCHREC_<SECTION>__<KEY>`` environment
variables; command-line flags of a job come last and are not part of it. The text form is TOML:
saved to a file it loads back as the same configuration (``--config``); each line's comment names
where the value came from. ``--json`` prints ``{"layers": [...], "values": {"section.key": {"value":
..., "from": ...}}}`` instead. Nothing here starts Spark.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any, Mapping, Optional

from batchrec.config import Layer, load_settings_with_origins, section_types, settings_as_dict

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
COMMENT_COLUMN = 40


def show(env: Optional[str] = None, config_file: Optional[Path] = None, as_json: bool = False,
         environ: Optional[Mapping[str, str]] = None, conf_dir: Optional[Path] = None) -> str:
    """The effective configuration as TOML with origins in comments (or as JSON).

    Raises:
        ConfigError: a layer is missing, unreadable or does not fit the schema (as for a job).
    """
    settings, origins, layers = load_settings_with_origins(env=env, config_file=config_file,
                                                           environ=environ, conf_dir=conf_dir)
    values = settings_as_dict(settings)
    if as_json:
        return json.dumps({"layers": [_describe(layer) for layer in layers],
                           "values": {f"{section}.{key}": {"value": value, "from": origins[f"{section}.{key}"]}
                                      for section, keys in values.items() for key, value in keys.items()}},
                          default=str)
    lines = ["# batchrec: the effective configuration (batchrec config show)",
             "# layers, lowest first; a job's command-line flags come after them:"]
    lines += [f"#   {_describe(layer)}" for layer in layers if layer.path is not None or layer.values]
    if not any(layer.path is not None for layer in layers):
        lines.append("#   no base.toml found (BATCHREC_CONF_DIR, ./conf, the packaged copy): defaults")
    for section in section_types():
        lines += ["", f"[{section}]"]
        for key, value in values[section].items():
            origin = origins[f"{section}.{key}"]
            text = (f"# {key} is not set" if value is None else f"{key} = {toml_value(value)}")
            lines.append(f"{text:<{COMMENT_COLUMN - 2}}  # {origin}")
    return "\n".join(lines)


def _describe(layer: Layer) -> str:
    if layer.path is not None:
        return f"{layer.label}: {layer.path}"
    if layer.origins:
        return f"{layer.label}: {', '.join(sorted(layer.origins.values()))}"
    return f"{layer.label}: nothing set" if not layer.values else layer.label


def toml_value(value: Any) -> str:
    """``value`` as a TOML literal (strings, numbers, booleans, lists, inline tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        # JSON's escapes are TOML's; DEL must be escaped in TOML and is not by JSON.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, Mapping) or dataclasses.is_dataclass(value):
        items = value.items() if isinstance(value, Mapping) else dataclasses.asdict(value).items()
        return "{" + ", ".join(f"{_key(k)} = {toml_value(v)}" for k, v in items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else toml_value(str(key))
