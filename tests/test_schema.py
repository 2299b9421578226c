"""Personalize schema JSON: loading, errors, the example schemas in conf/, inference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchrec.datasets.schema import (DatasetSchema, Field, default_schema, infer_schema,
                                      load_personalize_schema, parse_personalize_schema,
                                      schemas_by_kind)
from batchrec.errors import ConfigError

CONF_SCHEMAS = Path(__file__).resolve().parents[1] / "conf" / "schemas"


def _write(tmp_path: Path, data, name="schema.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_example_schemas_load_with_the_generator_columns():
    loaded = schemas_by_kind(sorted(CONF_SCHEMAS.glob("*.json")))
    assert loaded["interactions"].fields == (
        Field("USER_ID", "string", False), Field("ITEM_ID", "string", False),
        Field("EVENT_TYPE", "string", False), Field("EVENT_VALUE", "float", True),
        Field("TIMESTAMP", "long", False))
    assert loaded["items"].fields == (
        Field("ITEM_ID", "string", False), Field("CATEGORY", "string", True, categorical=True),
        Field("PRICE", "float", True), Field("CREATION_TIMESTAMP", "long", False))
    assert loaded["users"].fields == (
        Field("USER_ID", "string", False), Field("AGE", "int", True),
        Field("TIER", "string", True, categorical=True))


def test_avro_round_trip_and_case_insensitive_names():
    schema = parse_personalize_schema({
        "type": "record", "name": "items",
        "fields": [{"name": "item_id", "type": "string"},
                   {"name": "Genres", "type": ["null", "string"], "categorical": True},
                   {"name": "DESCRIPTION", "type": ["string", "null"], "textual": True}]})
    assert schema.kind == "items"
    assert schema.names == ("ITEM_ID", "GENRES", "DESCRIPTION")
    assert parse_personalize_schema(schema.to_avro()) == schema
    assert schema.to_avro()["fields"][1] == {"name": "GENRES", "type": ["string", "null"],
                                             "categorical": True}


@pytest.mark.parametrize("data, expected", [
    ({"type": "record", "name": "Ratings", "fields": []}, "schema name 'Ratings' must say which dataset"),
    ({"type": "record", "name": "Users", "fields": [{"name": "USER_ID", "type": "string"},
                                                    {"name": "TAGS", "type": {"type": "array"}}]},
     "field #2 (TAGS): type {\"type\": \"array\"} is not supported"),
    ({"type": "record", "name": "Interactions", "fields": [{"name": "USER_ID", "type": "string"},
                                                           {"name": "ITEM_ID", "type": "string"}]},
     "the Interactions schema has no TIMESTAMP field"),
    ({"type": "record", "name": "Interactions",
      "fields": [{"name": "USER_ID", "type": "string"}, {"name": "ITEM_ID", "type": "string"},
                 {"name": "TIMESTAMP", "type": "string"}]},
     "TIMESTAMP has type string; expected long"),
    ({"type": "record", "name": "Users", "fields": [{"name": "USER_ID", "type": "string"},
                                                    {"name": "GENRES_1", "type": "string"},
                                                    {"name": "GENRES1", "type": "string"}]},
     "fields 'GENRES_1' and 'GENRES1' have the same alphanumeric name"),
    ([1, 2], "expected a Personalize Avro schema"),
])
def test_bad_schemas_say_what_is_wrong(tmp_path, data, expected):
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load_personalize_schema(path)
    assert str(path) in str(err.value)
    assert expected in str(err.value)


def test_missing_and_invalid_json_files(tmp_path):
    with pytest.raises(ConfigError, match=r"--schema .*nope.json: cannot read the file"):
        load_personalize_schema(tmp_path / "nope.json")
    with pytest.raises(ConfigError, match=r"not valid JSON \(line 1"):
        load_personalize_schema(_write(tmp_path, "{not json"))


def test_two_schemas_for_one_dataset_are_refused(tmp_path):
    first = _write(tmp_path, json.loads((CONF_SCHEMAS / "users.json").read_text()), "a.json")
    second = _write(tmp_path, json.loads((CONF_SCHEMAS / "users.json").read_text()), "b.json")
    with pytest.raises(ConfigError, match="a second schema for the users dataset"):
        schemas_by_kind([first, second])


def test_default_schema_has_reserved_columns():
    assert default_schema("interactions").field("event_value") == Field("EVENT_VALUE", "float")
    with pytest.raises(ConfigError, match="unknown dataset kind 'ratings'"):
        default_schema("ratings")


def test_infer_schema_types_each_column(spark):
    df = spark.createDataFrame(
        [("i1", "10", "1.5", "true", "a|b", "1700000000"),
         ("i2", "3000000000", "2", "false", None, "1700000001"),
         ("i3", "7", "x", "true", "c", None)],
        "ITEM_ID string, SMALL string, MIXED string, FLAG string, GENRES string, CREATION_TIMESTAMP string")
    df = df.withColumn("BIG", df.SMALL).withColumn("SMALL", df.SMALL.substr(1, 2))
    schema = infer_schema(df, "items")
    assert schema == DatasetSchema("items", (
        Field("ITEM_ID", "string", False),
        Field("SMALL", "int", False),
        Field("MIXED", "string", False, categorical=True),
        Field("FLAG", "boolean", False),
        Field("GENRES", "string", True, categorical=True),
        Field("CREATION_TIMESTAMP", "long", True),
        Field("BIG", "long", False),
    ))
    # What --infer-schema prints is accepted back as --schema.
    assert parse_personalize_schema(json.loads(schema.to_json())) == schema
