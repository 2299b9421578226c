"""Validation rules, the rejects table, reject-fraction and minimum checks on tiny inline data."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from batchrec.config import Settings, ValidationSettings
from batchrec.datasets import rules
from batchrec.datasets import validation as v
from batchrec.datasets.readers import read_dataset
from batchrec.datasets.rejects import write_rejects
from batchrec.datasets.schema import load_personalize_schema
from batchrec.datasets.summary import check_minimums
from batchrec.errors import DataError, UsageError

RUN_DATE = dt.date(2024, 1, 31)
END_OF_RUN_DATE = 1706745600  # 2024-02-01T00:00:00Z
CONF_SCHEMAS = Path(__file__).resolve().parents[1] / "conf" / "schemas"


def _settings(**validation) -> Settings:
    return dataclasses.replace(Settings(), validation=ValidationSettings(**validation))


def _write(path: Path, text: str | bytes) -> str:
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return str(path)


def _reasons(spark, path, kind="interactions", schema=None, limits=ValidationSettings()):
    flagged = rules.flag_rows(read_dataset(spark, path, kind, schema=schema), kind, schema, limits,
                              END_OF_RUN_DATE)
    return sorted((r["ROW"], r[rules.REASON_COLUMN], r[rules.FIELD_COLUMN],
                   [h.reason for h in r[rules.REASONS_COLUMN]]) for r in flagged.collect())


def test_each_interaction_rule_gives_its_reason(spark, tmp_path):
    path = _write(tmp_path / "i.csv", (
        "ROW,USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE,EVENT_VALUE\n"
        "01,u1,i1,1700000000,click,1.5\n"
        "02,,i1,1700000000,click,1\n"
        "03,u3,  ,1700000000,click,1\n"
        "04,u4,i1,1700000000000,click,1\n"
        "05,u5,i1,yesterday,click,1\n"
        "06,u6,i1,-5,click,1\n"
        f"07,u7,i1,{END_OF_RUN_DATE + 1},click,1\n"
        f"08,u8,i1,{END_OF_RUN_DATE},click,\n"
        "09,u9,i1,1700000000,click,-2\n"
        "10,u10,i1,1700000000,click,NaN\n"
        "11,u11,i1,1700000000,click,lots\n"
        "12,u12,i1,,click,1\n"
        f"13,{'u' * 257},i1,1700000000,click,1\n"
        f"14,u14,i1,1700000000,{'e' * 1001},1\n"
        "15,u15,i1,1.7e9,click,1\n"
        "16,,i1,yesterday,click,-1\n"
    ).encode() + b"17,u\xff\xfe,i1,1700000000,click,1\n")
    assert _reasons(spark, path) == [
        ("01", None, None, []),
        ("02", "missing_id", "USER_ID", ["missing_id"]),
        ("03", "missing_id", "ITEM_ID", ["missing_id"]),
        ("04", "timestamp_in_milliseconds", "TIMESTAMP", ["timestamp_in_milliseconds"]),
        ("05", "invalid_timestamp", "TIMESTAMP", ["invalid_timestamp"]),
        ("06", "timestamp_before_1970", "TIMESTAMP", ["timestamp_before_1970"]),
        ("07", "timestamp_in_future", "TIMESTAMP", ["timestamp_in_future"]),
        ("08", None, None, []),
        ("09", "negative_event_value", "EVENT_VALUE", ["negative_event_value"]),
        ("10", "nan_value", "EVENT_VALUE", ["nan_value"]),
        ("11", "invalid_number", "EVENT_VALUE", ["invalid_number"]),
        ("12", "missing_value", "TIMESTAMP", ["missing_value"]),
        ("13", "id_too_long", "USER_ID", ["id_too_long"]),
        ("14", "string_too_long", "EVENT_TYPE", ["string_too_long"]),
        ("15", None, None, []),
        ("16", "missing_id", "USER_ID", ["missing_id", "invalid_timestamp", "negative_event_value"]),
        ("17", "invalid_utf8", "USER_ID", ["invalid_utf8"]),
    ]


def test_items_and_users_follow_their_schemas(spark, tmp_path):
    items = _write(tmp_path / "items.csv", (
        "ITEM_ID,CATEGORY,PRICE,CREATION_TIMESTAMP\n"
        f"i1,shoes|sale,9.5,1700000000\n"
        f"i2,{'c' * 1000}|{'d' * 1000},1,1700000000\n"
        f"i3,{'c' * 1001}|d,1,1700000000\n"
        "i4,shoes,cheap,1700000000\n"
        "i5,shoes,1,\n"))
    schema = load_personalize_schema(CONF_SCHEMAS / "items.json")
    flagged = rules.flag_rows(read_dataset(spark, items, "items", schema=schema), "items", schema,
                              ValidationSettings(), END_OF_RUN_DATE)
    got = sorted((r.ITEM_ID, r[rules.REASON_COLUMN], r[rules.FIELD_COLUMN]) for r in flagged.collect())
    assert got == [("i1", None, None), ("i2", None, None), ("i3", "string_too_long", "CATEGORY"),
                   ("i4", "invalid_number", "PRICE"), ("i5", "missing_value", "CREATION_TIMESTAMP")]
    users = _write(tmp_path / "users.csv", "USER_ID,AGE,TIER\nu1,34,gold\nu2,3.5,\nu3,99999999999,x\n")
    schema = load_personalize_schema(CONF_SCHEMAS / "users.json")
    flagged = rules.flag_rows(read_dataset(spark, users, "users", schema=schema), "users", schema,
                              ValidationSettings(), END_OF_RUN_DATE)
    assert sorted((r.USER_ID, r[rules.REASON_COLUMN]) for r in flagged.collect()) == [
        ("u1", None), ("u2", "invalid_number"), ("u3", "invalid_number")]
    valid = rules.valid_rows(flagged, "users")
    assert valid.dtypes == [("USER_ID", "string"), ("AGE", "int"), ("TIER", "string")]
    assert [tuple(r) for r in valid.collect()] == [("u1", 34, "gold")]


def test_load_datasets_types_counts_writes_rejects_and_report(spark, tmp_path):
    lines = ["USER_ID,ITEM_ID,TIMESTAMP,EVENT_VALUE"]
    lines += [f"u{i % 3},i{i},{1700000000 + i},1" for i in range(6)]
    lines += ["u0,i0,1700000000,1", "u0,i0,1700000000,1",  # two extra copies of the first row
              "u9,i9,1700000000000,1", "u9,i8,1700000001000,1"]
    path = _write(tmp_path / "i.csv", "\n".join(lines) + "\n")
    rejects, report = str(tmp_path / "rejects"), tmp_path / "out" / "report.json"
    result = v.load_datasets(spark, _settings(max_reject_fraction=0.5), path, rejects_path=rejects,
                             report_path=report, run_date=RUN_DATE)
    assert result.interactions.dtypes == [("USER_ID", "string"), ("ITEM_ID", "string"),
                                          ("TIMESTAMP", "bigint"), ("EVENT_VALUE", "double"),
                                          ("EVENT_TYPE", "string")]
    assert sorted(tuple(r) for r in result.interactions.collect()) == sorted(
        (f"u{i % 3}", f"i{i}", 1700000000 + i, 1.0, None) for i in range(6))
    summary = result.summary["datasets"]["interactions"]
    assert (summary["rows_read"], summary["rows_valid"], summary["rows_rejected"]) == (10, 6, 4)
    assert summary["rejects_by_reason"] == {"timestamp_in_milliseconds": 2, "duplicate": 2}
    assert summary["notes"] == [f"file:{path}: mixed timestamp units: 2 rows look like milliseconds, "
                                "8 like seconds; Personalize expects epoch seconds"]
    assert json.loads(report.read_text())["datasets"]["interactions"]["rows_rejected"] == 4
    table = spark.read.format("delta").load(rejects)
    got = sorted((str(r.run_date), r.dataset, r.reason, r.field, r.source_file, json.loads(r.record)["ITEM_ID"])
                 for r in table.collect())
    assert got == [("2024-01-31", "interactions", "duplicate", "", f"file:{path}", "i0")] * 2 + [
        ("2024-01-31", "interactions", "timestamp_in_milliseconds", "TIMESTAMP", f"file:{path}", "i8"),
        ("2024-01-31", "interactions", "timestamp_in_milliseconds", "TIMESTAMP", f"file:{path}", "i9")]
    # The same run date replaces its rejects; another run date adds its own.
    v.load_datasets(spark, _settings(max_reject_fraction=0.5), path, rejects_path=rejects, run_date=RUN_DATE)
    next_day = RUN_DATE + dt.timedelta(days=1)
    write_rejects(table.limit(1).withColumn("run_date", F.lit(next_day)), rejects, next_day)
    counts = {str(r.run_date): r["count"] for r in spark.read.format("delta").load(rejects)
              .groupBy("run_date").count().collect()}
    assert counts == {"2024-01-31": 4, "2024-02-01": 1}


def test_too_many_rejects_fail_with_counts_per_reason(spark, tmp_path):
    path = _write(tmp_path / "i.csv", "USER_ID,ITEM_ID,TIMESTAMP\nu1,i1,1700000000\nu1,i2,1700000000000\n")
    with pytest.raises(DataError) as err:
        v.load_datasets(spark, _settings(), path, run_date=RUN_DATE)
    assert str(err.value) == (
        f"interactions {path}: 1 of 2 rows rejected (50.00%), more than the allowed 1.00%: "
        f"timestamp_in_milliseconds (TIMESTAMP): 1; file:{path}: mixed timestamp units: 1 rows look "
        "like milliseconds, 1 like seconds; Personalize expects epoch seconds")


def test_unknown_rename_source_is_a_usage_error(spark, tmp_path):
    path = _write(tmp_path / "i.csv", "USER_ID,ITEM_ID,TIMESTAMP\nu1,i1,1700000000\n")
    with pytest.raises(UsageError, match=r"--rename userid2=USER_ID: no such column in any dataset; "
                                         r"columns found: USER_ID, ITEM_ID, TIMESTAMP"):
        v.load_datasets(spark, _settings(), path, renames=[("userid2", "USER_ID")])


def test_check_minimums(spark):
    rows = [("u1", "i1"), ("u1", "i2"), ("u2", "i1"), ("u3", "i1"), ("u3", "i3")]
    df = spark.createDataFrame(rows, "USER_ID string, ITEM_ID string")
    ok = check_minimums(df, ValidationSettings(min_interactions=5, min_users_with_two_interactions=2))
    assert (ok["interactions"], ok["users"], ok["users_with_two_interactions"]) == (5, 3, 2)
    with pytest.raises(DataError) as err:
        check_minimums(df, ValidationSettings(), context="train")
    assert str(err.value) == (
        "train: only 5 valid interactions; at least 1000 are needed (Personalize's minimum; lower it "
        "with --min-interactions); only 2 users with at least 2 interactions; at least 25 are needed "
        "(lower with --min-users)")
