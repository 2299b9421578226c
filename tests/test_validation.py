"""Validation rules, the rejects table, reject-fraction and minimum checks on tiny inline data."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
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


def _csv_rows_scanned(spark, action) -> list[int]:
    """Run ``action``; return the rows each CSV file scan produced, one entry per scan that ran.

    Read from the executed plans Spark keeps for every SQL query (no listener of our own): a
    scan node reused from a cache is in the plan but read no file, so it does not count.
    """
    store = spark._jsparkSession.sharedState().statusStore()

    def execution_ids():
        executions = store.executionsList()
        return {executions.apply(i).executionId() for i in range(executions.size())}

    before = execution_ids()
    action()
    spark.sparkContext._jsc.sc().listenerBus().waitUntilEmpty()
    scanned = []
    for execution in sorted(execution_ids() - before):
        values = store.executionMetrics(execution)
        nodes = store.planGraph(execution).allNodes()
        for node in (nodes.apply(i) for i in range(nodes.size())):
            if not node.name().startswith("Scan csv"):
                continue
            metrics = {m.name(): values.get(m.accumulatorId()) for m in
                       (node.metrics().apply(j) for j in range(node.metrics().size()))}
            files = metrics["number of files read"]
            if files.isDefined() and int(files.get().replace(",", "")) > 0:
                scanned.append(int(metrics["number of output rows"].get().replace(",", "")))
    return scanned


def test_each_input_is_scanned_once_for_rules_rejects_summary_and_valid_rows(spark, tmp_path):
    lines = ["USER_ID,ITEM_ID,TIMESTAMP,EVENT_VALUE"]
    lines += [f"u{i % 40},i{i % 70},{1700000000 + i},1" for i in range(400)]
    lines += ["u0,i0,1700000000,1"] * 3 + ["u2,,1700000000,1", "u3,i3,1700000000000,1"]  # 3 extra copies
    path = _write(tmp_path / "i.csv", "\n".join(lines) + "\n")
    items = _write(tmp_path / "items.csv", "ITEM_ID,CREATION_TIMESTAMP\n" + "".join(
        f"i{i},{1690000000 + i}\n" for i in range(70)))
    settings = _settings(max_reject_fraction=0.5, min_interactions=1, min_users_with_two_interactions=1)
    seen = {}

    def validate_and_use():
        result = v.load_datasets(spark, settings, path, items=items, rejects_path=str(tmp_path / "rejects"),
                                 report_path=tmp_path / "report.json", run_date=RUN_DATE)
        with result:
            seen["rows"] = result.interactions.count()
            seen["minimums"] = check_minimums(result.interactions, settings.validation)
            seen["items"] = result.items.count()
            seen["summary"] = result.summary["datasets"]["interactions"]

    scans = _csv_rows_scanned(spark, validate_and_use)
    assert sorted(scans) == [70, 405]  # each file once, every row of it, nothing read again
    assert (seen["rows"], seen["items"], seen["minimums"]["interactions"]) == (400, 70, 400)
    assert seen["summary"]["rejects_by_reason"] == {"missing_id": 1, "timestamp_in_milliseconds": 1,
                                                    "duplicate": 3}
    assert spark.read.format("delta").load(str(tmp_path / "rejects")).count() == 5


def test_stages_of_one_run_validate_each_input_once_and_release_at_the_end(spark, tmp_path):
    """Inside ``shared_validation`` (the nightly pipeline), a second load of the same datasets reads
    nothing again and returns the same rows; other settings validate anew; the caches go at the end."""
    path = _write(tmp_path / "i.csv", "USER_ID,ITEM_ID,TIMESTAMP\n" + "".join(
        f"u{i % 9},i{i % 13},{1700000000 + i}\n" for i in range(60)) + "u1,,1700000000\n")
    settings = _settings(max_reject_fraction=0.5, min_interactions=1, min_users_with_two_interactions=1)
    jsc = spark.sparkContext._jsc
    persistent_before = jsc.getPersistentRDDs().size()
    found = {}

    def two_stages():
        with v.shared_validation():
            with v.load_datasets(spark, settings, path, run_date=RUN_DATE, enforce=False,
                                 report_path=tmp_path / "report.json") as first:
                found["first"] = sorted(map(tuple, first.interactions.collect()))
            found["after_first"] = jsc.getPersistentRDDs().size()  # kept for the next stage
            with v.load_datasets(spark, settings, path, run_date=RUN_DATE) as second:
                found["second"] = sorted(map(tuple, second.interactions.collect()))
                found["summary"] = second.summary["datasets"]["interactions"]["rows_rejected"]
            other = _settings(max_reject_fraction=0.9, min_interactions=1, min_users_with_two_interactions=1)
            with v.load_datasets(spark, other, path, run_date=RUN_DATE) as third:
                found["third"] = third.interactions.count()

    scans = _csv_rows_scanned(spark, two_stages)
    assert scans == [61, 61]  # once for both stages with equal settings, once for other settings
    assert found["first"] == found["second"] and len(found["first"]) == 60 and found["third"] == 60
    assert found["summary"] == 1 and found["after_first"] == persistent_before + 1
    assert jsc.getPersistentRDDs().size() == persistent_before


def test_duplicates_are_exact_copies_across_files_and_not_hash_lookalikes(spark, tmp_path):
    folder = tmp_path / "interactions"
    folder.mkdir()
    header = "USER_ID,ITEM_ID,TIMESTAMP,A,B\n"
    # x in A and nothing in B hashes like nothing in A and x in B (nulls are skipped): not copies.
    first = _write(folder / "part-1.csv", header + "u1,i1,1700000000,x,\nu1,i1,1700000000,,x\n"
                                          "u2,i2,1700000000,y,y\nu2,i2,1700000000,y,y\n")
    second = _write(folder / "part-2.csv", header + "u2,i2,1700000000,y,y\nu3,i3,1700000000,,\n")
    result = v.load_datasets(spark, _settings(max_reject_fraction=0.9), str(folder),
                             rejects_path=str(tmp_path / "rejects"), run_date=RUN_DATE)
    with result:
        kept = sorted((tuple(r) for r in result.interactions.select("USER_ID", "A", "B").collect()),
                      key=lambda r: tuple(x or "" for x in r))
    assert kept == [("u1", None, "x"), ("u1", "x", None), ("u2", "y", "y"), ("u3", None, None)]
    rejects = spark.read.format("delta").load(str(tmp_path / "rejects")).collect()
    # Three copies of the u2 row: the first file's copy is kept, the other two are rejected.
    assert sorted((r.reason, r.reasons, r.source_file) for r in rejects) == [
        ("duplicate", ["duplicate"], f"file:{first}"), ("duplicate", ["duplicate"], f"file:{second}")]


def test_backfill_leaves_out_rows_after_the_run_date_and_rejects_only_the_real_future(spark, tmp_path):
    now = int(time.time())
    rows = [f"u{i},i{i},{END_OF_RUN_DATE - 1000 + i}" for i in range(50)]  # inside the window
    rows += [f"u{i},i{i},{END_OF_RUN_DATE}" for i in range(50, 60)]  # the last second of it
    rows += [f"u{i},i{i},{END_OF_RUN_DATE + 1 + i}" for i in range(60, 80)]  # days after the run date
    rows += [f"u{i},i{i},{now + 60}" for i in range(80, 83)]  # a minute ahead: clock skew
    rows += [f"u{i},i{i},{now + 3 * 3600}" for i in range(83, 85)]  # hours ahead of the clock
    path = _write(tmp_path / "i.csv", "USER_ID,ITEM_ID,TIMESTAMP\n" + "\n".join(rows) + "\n")
    settings = _settings(max_reject_fraction=0.05)
    with v.load_datasets(spark, settings, path, rejects_path=str(tmp_path / "rejects"),
                         run_date=RUN_DATE) as result:
        kept = sorted(int(r.USER_ID[1:]) for r in result.interactions.collect())
        summary = result.summary["datasets"]["interactions"]
    assert kept == list(range(60))
    assert (summary["rows_read"], summary["rows_valid"], summary["rows_rejected"],
            summary["rows_after_run_date"]) == (85, 60, 2, 23)
    assert summary["rejects_by_reason"] == {"timestamp_in_future": 2}
    rejected = spark.read.format("delta").load(str(tmp_path / "rejects")).collect()
    assert sorted(json.loads(r.record)["USER_ID"] for r in rejected) == ["u83", "u84"]
    # A backfill whose only "future" rows lie after its run date passes the default 1% limit.
    backfill = _write(tmp_path / "backfill.csv", "USER_ID,ITEM_ID,TIMESTAMP\n" + "\n".join(rows[:80]) + "\n")
    with v.load_datasets(spark, _settings(), backfill, run_date=RUN_DATE) as passed:
        counts = passed.summary["datasets"]["interactions"]
    assert (counts["rows_valid"], counts["rows_rejected"], counts["rows_after_run_date"]) == (60, 0, 20)
    # Without a run date nothing is "after"; only the wall clock bounds the data.
    with v.load_datasets(spark, settings, path) as undated:
        counts = undated.summary["datasets"]["interactions"]
    assert (counts["rows_valid"], counts["rows_rejected"], counts["rows_after_run_date"]) == (83, 2, 0)


def test_time_bounds_follow_the_wall_clock_and_the_run_date():
    now = END_OF_RUN_DATE + 10 * 86400  # ten days after the run date: a backfill
    tolerance = rules.FUTURE_TOLERANCE_SECONDS
    assert v.time_bounds(RUN_DATE, now=now) == (now + tolerance, END_OF_RUN_DATE)
    # A run date that has not ended yet (today, generated data): its own window counts as present.
    assert v.time_bounds(RUN_DATE, now=END_OF_RUN_DATE - 3600) == (END_OF_RUN_DATE + tolerance,
                                                                    END_OF_RUN_DATE)
    assert v.time_bounds(None, now=now) == (now + tolerance, None)
    assert 0 < tolerance <= 86400


def test_release_drops_the_caches_and_leaves_the_session_as_it_was(spark, tmp_path):
    path = _write(tmp_path / "i.csv", "USER_ID,ITEM_ID,TIMESTAMP\nu1,i1,1700000000\nu2,i1,1700000001\n")
    items = _write(tmp_path / "items.csv", "ITEM_ID,CATEGORY\ni1,a\n")
    users = _write(tmp_path / "users.csv", "USER_ID,TIER\nu1,gold\nu2,\n")
    jsc = spark.sparkContext._jsc
    conf_before = dict(spark.conf.getAll)
    persistent_before = jsc.getPersistentRDDs().size()
    result = v.load_datasets(spark, _settings(), path, items=items, users=users, run_date=RUN_DATE)
    assert len(result.cached) == 3 and all(f.is_cached for f in result.cached)
    assert jsc.getPersistentRDDs().size() == persistent_before + 3
    with result:
        assert (result.interactions.count(), result.items.count(), result.users.count()) == (2, 1, 2)
    assert not any(f.is_cached for f in result.cached)
    assert jsc.getPersistentRDDs().size() == persistent_before
    assert dict(spark.conf.getAll) == conf_before
    # A failing validation releases what it cached before raising.
    bad = _write(tmp_path / "bad.csv", "USER_ID,ITEM_ID,TIMESTAMP\n,i1,1700000000\n")
    with pytest.raises(DataError):
        v.load_datasets(spark, _settings(), bad, items=items, run_date=RUN_DATE)
    assert jsc.getPersistentRDDs().size() == persistent_before
