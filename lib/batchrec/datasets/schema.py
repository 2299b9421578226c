"""Dataset kinds, their required and reserved columns, and Personalize's Avro schemas.

A :class:`DatasetSchema` says which type each column must parse as. It comes from a Personalize
schema JSON (accepted as is, see :func:`load_personalize_schema`), from the reserved columns of the
dataset kind (:func:`default_schema`) or from the data (:func:`infer_schema`, printed by
``batchrec validate --infer-schema`` so a user can save it and pass it back with ``--schema``).
Nothing here imports pyspark at module level.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from batchrec import columns
from batchrec.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

INTERACTIONS = "interactions"
ITEMS = "items"
USERS = "users"
DATASET_KINDS = (INTERACTIONS, ITEMS, USERS)

# Personalize's record names ("name" of the Avro schema) per dataset kind.
SCHEMA_NAMES = {INTERACTIONS: "Interactions", ITEMS: "Items", USERS: "Users"}
SCHEMA_NAMESPACE = "com.amazonaws.personalize.schema"

REQUIRED_COLUMNS = {
    INTERACTIONS: (columns.USER_ID, columns.ITEM_ID, columns.TIMESTAMP),
    ITEMS: (columns.ITEM_ID,),
    USERS: (columns.USER_ID,),
}
ID_COLUMNS = {
    INTERACTIONS: (columns.USER_ID, columns.ITEM_ID),
    ITEMS: (columns.ITEM_ID,),
    USERS: (columns.USER_ID,),
}
# Epoch-seconds columns: checked for milliseconds, the future and dates before 1970.
TIMESTAMP_COLUMNS = (columns.TIMESTAMP, columns.CREATION_TIMESTAMP)

STRING, LONG, INT, FLOAT, DOUBLE, BOOLEAN = "string", "long", "int", "float", "double", "boolean"
AVRO_TYPES = (STRING, LONG, INT, FLOAT, DOUBLE, BOOLEAN)
NUMERIC_TYPES = (LONG, INT, FLOAT, DOUBLE)
INT_MAX = 2**31 - 1
# A string field of an inferred Items schema longer than this on average is free text.
TEXTUAL_MIN_AVG_LENGTH = 80


@dataclass(frozen=True)
class Field:
    """One column: its Avro type, whether blanks are allowed, and Personalize's string flags."""

    name: str
    type: str
    nullable: bool = True
    categorical: bool = False
    textual: bool = False

    def to_avro(self) -> dict[str, Any]:
        """The field as it appears in a Personalize schema JSON."""
        out: dict[str, Any] = {"name": self.name, "type": [self.type, "null"] if self.nullable else self.type}
        if self.categorical:
            out["categorical"] = True
        if self.textual:
            out["textual"] = True
        return out


@dataclass(frozen=True)
class DatasetSchema:
    """The typed columns of one dataset kind."""

    kind: str
    fields: tuple[Field, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def field(self, name: str) -> Optional[Field]:
        """The field called ``name`` (case-insensitive), or None."""
        upper = name.upper()
        return next((f for f in self.fields if f.name == upper), None)

    def to_avro(self) -> dict[str, Any]:
        """The schema as a Personalize Avro record (what ``--schema`` accepts)."""
        return {
            "type": "record",
            "name": SCHEMA_NAMES[self.kind],
            "namespace": SCHEMA_NAMESPACE,
            "fields": [f.to_avro() for f in self.fields],
            "version": "1.0",
        }

    def to_json(self) -> str:
        return json.dumps(self.to_avro(), indent=2)


_RESERVED = {
    INTERACTIONS: (
        Field(columns.USER_ID, STRING, nullable=False),
        Field(columns.ITEM_ID, STRING, nullable=False),
        Field(columns.TIMESTAMP, LONG, nullable=False),
        Field(columns.EVENT_TYPE, STRING),
        Field(columns.EVENT_VALUE, FLOAT),
        Field(columns.IMPRESSION, STRING),
    ),
    ITEMS: (Field(columns.ITEM_ID, STRING, nullable=False), Field(columns.CREATION_TIMESTAMP, LONG)),
    USERS: (Field(columns.USER_ID, STRING, nullable=False),),
}


def check_kind(kind: str) -> str:
    """Return ``kind`` or raise ConfigError when it is not one of :data:`DATASET_KINDS`."""
    if kind not in DATASET_KINDS:
        raise ConfigError(f"unknown dataset kind {kind!r}; expected one of {', '.join(DATASET_KINDS)}")
    return kind


def default_schema(kind: str) -> DatasetSchema:
    """Personalize's required and reserved columns of ``kind``; other columns are read as strings."""
    return DatasetSchema(check_kind(kind), _RESERVED[kind])


def reserved_field(kind: str, name: str) -> Optional[Field]:
    """The reserved field ``name`` of ``kind``, or None."""
    return default_schema(kind).field(name)


def parse_personalize_schema(data: Any, source: str = "schema") -> DatasetSchema:
    """Turn a Personalize Avro schema (already parsed JSON) into a :class:`DatasetSchema`.

    Raises:
        ConfigError: not a flat Avro record of Interactions/Items/Users, an unknown type, a missing
            or wrongly typed required field, or two fields with the same alphanumeric name.
    """
    if not isinstance(data, dict) or data.get("type") != "record" or not isinstance(data.get("fields"), list):
        raise ConfigError(f"{source}: expected a Personalize Avro schema: "
                          '{"type": "record", "name": "Interactions|Items|Users", "fields": [...]}')
    name = str(data.get("name", ""))
    kinds = {v.lower(): k for k, v in SCHEMA_NAMES.items()}
    kind = kinds.get(name.lower())
    if kind is None:
        raise ConfigError(f"{source}: schema name {name!r} must say which dataset it describes: "
                          f"one of {', '.join(SCHEMA_NAMES.values())}")
    fields, seen = [], {}
    for i, raw in enumerate(data["fields"]):
        where = f"{source}: field #{i + 1}"
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
            raise ConfigError(f"{where}: expected an object with a \"name\" and a \"type\"")
        field_name = raw["name"].upper()
        avro_type, nullable = _parse_type(raw.get("type"), f"{where} ({raw['name']})")
        # Personalize compares names after dropping non-alphanumerics (GENRES_1 == GENRES1).
        key = re.sub(r"[^0-9A-Z]", "", field_name)
        if key in seen:
            raise ConfigError(f"{source}: fields {seen[key]!r} and {raw['name']!r} have the same "
                              f"alphanumeric name; Personalize needs unique names")
        seen[key] = raw["name"]
        fields.append(Field(field_name, avro_type, nullable, bool(raw.get("categorical", False)),
                            bool(raw.get("textual", False))))
    schema = DatasetSchema(kind, tuple(fields))
    for required in _RESERVED[kind]:
        if required.nullable:
            continue
        found = schema.field(required.name)
        if found is None:
            raise ConfigError(f"{source}: the {SCHEMA_NAMES[kind]} schema has no {required.name} field; "
                              f"required: {', '.join(REQUIRED_COLUMNS[kind])}")
        allowed = (LONG, INT) if required.type == LONG else (required.type,)
        if found.type not in allowed:
            raise ConfigError(f"{source}: {required.name} has type {found.type}; expected {required.type}")
    return schema


def _parse_type(raw: Any, where: str) -> tuple[str, bool]:
    """Avro ``"long"`` or ``["long", "null"]`` -> (type, nullable)."""
    options = raw if isinstance(raw, list) else [raw]
    nullable = "null" in options
    concrete = [t for t in options if t != "null"]
    if len(concrete) != 1 or concrete[0] not in AVRO_TYPES:
        raise ConfigError(f"{where}: type {json.dumps(raw)} is not supported; expected one of "
                          f"{', '.join(AVRO_TYPES)}, optionally in a union with \"null\" "
                          "(Personalize schemas are flat)")
    return concrete[0], nullable


def load_personalize_schema(path: Path | str) -> DatasetSchema:
    """Read a Personalize schema JSON file; its ``name`` says which dataset it describes.

    Raises:
        ConfigError: the file is missing, is not JSON, or is not a valid Personalize schema.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--schema {path}: cannot read the file ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"--schema {path}: not UTF-8 text (byte offset {exc.start}); expected a "
                          "Personalize schema JSON file") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--schema {path}: not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    return parse_personalize_schema(data, f"--schema {path}")


def schemas_by_kind(paths: tuple[Path, ...] | list[Path]) -> dict[str, DatasetSchema]:
    """Load every ``--schema`` file; raise ConfigError when two describe the same dataset."""
    out: dict[str, DatasetSchema] = {}
    for path in paths:
        schema = load_personalize_schema(path)
        if schema.kind in out:
            raise ConfigError(f"--schema {path}: a second schema for the {schema.kind} dataset")
        out[schema.kind] = schema
    return out


def infer_schema(df: "DataFrame", kind: str) -> DatasetSchema:
    """Infer a Personalize schema from a dataset as read (strings from CSV, typed from Parquet).

    Reserved columns keep Personalize's types. Other string columns become ``int``/``long``/
    ``double``/``boolean`` when every non-blank value parses as such, else categorical strings
    (textual for long free text in Items). One aggregation pass over the data.
    """
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    check_kind(kind)
    candidates = [c for c in df.columns if c != columns.SOURCE_FILE and not c.startswith("_")]
    aggs = [F.count(F.lit(1)).alias("rows")]
    for i, name in enumerate(candidates):
        col = F.col(quote_name(name))
        text = F.trim(col.cast("string"))
        present = text.isNotNull() & (text != "")
        as_long = F.expr(f"try_cast(trim(cast({quote_name(name)} as string)) as bigint)")
        as_double = F.expr(f"try_cast(trim(cast({quote_name(name)} as string)) as double)")
        aggs += [
            F.sum(present.cast("long")).alias(f"p{i}"),
            F.sum((present & as_long.isNotNull()).cast("long")).alias(f"l{i}"),
            F.sum((present & as_double.isNotNull()).cast("long")).alias(f"d{i}"),
            F.sum((present & text.isin("true", "false")).cast("long")).alias(f"b{i}"),
            F.max(F.abs(as_long)).alias(f"m{i}"),
            F.avg(F.length(text)).alias(f"a{i}"),
        ]
    stats = df.agg(*aggs).first().asDict()
    dtypes = dict(df.dtypes)
    fields = []
    for i, name in enumerate(candidates):
        reserved = reserved_field(kind, name)
        if reserved is not None:
            fields.append(reserved)
            continue
        present, rows = stats[f"p{i}"] or 0, stats["rows"]
        nullable = present < rows
        spark_type = df.schema[name].dataType
        if not isinstance(spark_type, T.StringType):
            avro = _avro_of_spark(dtypes[name])
        elif present == 0:
            avro = STRING
        elif stats[f"l{i}"] == present:
            avro = INT if (stats[f"m{i}"] or 0) <= INT_MAX else LONG
        elif stats[f"d{i}"] == present:
            avro = DOUBLE
        elif stats[f"b{i}"] == present:
            avro = BOOLEAN
        else:
            avro = STRING
        textual = kind == ITEMS and avro == STRING and (stats[f"a{i}"] or 0) >= TEXTUAL_MIN_AVG_LENGTH
        fields.append(Field(name, avro, nullable, categorical=avro == STRING and not textual,
                            textual=textual))
    for reserved in _RESERVED[kind]:
        if not reserved.nullable and reserved.name not in candidates:
            fields.insert(0, reserved)
    # Personalize allows one textual field per Items schema: keep the first, the rest are categorical.
    textual_seen = False
    for i, f in enumerate(fields):
        if f.textual:
            if textual_seen:
                fields[i] = replace(f, textual=False, categorical=True)
            textual_seen = True
    return DatasetSchema(kind, tuple(fields))


def _avro_of_spark(simple_type: str) -> str:
    return {"bigint": LONG, "int": INT, "smallint": INT, "tinyint": INT, "float": FLOAT,
            "double": DOUBLE, "boolean": BOOLEAN, "timestamp": LONG, "date": LONG}.get(
        simple_type, DOUBLE if simple_type.startswith("decimal") else STRING)


def quote_name(name: str) -> str:
    """A column name safe inside a SQL expression."""
    return "`" + name.replace("`", "``") + "`"
