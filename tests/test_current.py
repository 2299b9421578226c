"""The ``current`` Delta table: MERGE of each run's lists by key, against a plain-Python model of the rules."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from batchrec.errors import DataError, JobError
from batchrec.sinks.current import update_current

D1, D2, D3 = dt.date(2026, 11, 18), dt.date(2026, 11, 19), dt.date(2026, 11, 20)
RECS_DDL = ("run_date date, solution string, solution_version string, recipe string, user_id string, "
            "rank int, item_id string, score double, reason string")
SEGMENTS_DDL = ("run_date date, solution string, solution_version string, recipe string, segment_id string, "
                "query string, rank int, user_id string, score double")


def recs(run_date, solution, lists, version="v1"):
    """Rows for {user: [item, ...]} (rank = position + 1, score = 1 / rank)."""
    return [(run_date, solution, version, "user-personalization", user, rank, item, 1.0 / rank, "model")
            for user, items in lists.items() for rank, item in enumerate(items, 1)]


def write_run(spark, path, rows, ddl=RECS_DDL):
    run_date, solution = rows[0][0], rows[0][1]
    (spark.createDataFrame(rows, ddl).write.format("delta").mode("overwrite")
     .option("replaceWhere", f"run_date = DATE'{run_date.isoformat()}' AND solution = '{solution}'")
     .partitionBy("run_date").save(str(path)))


def current_rows(spark, path):
    return sorted(tuple(r) for r in spark.read.format("delta").load(str(path)).collect())


def test_current_keeps_the_latest_list_per_user(spark, tmp_path):
    history, current = tmp_path / "history", tmp_path / "current"
    run1 = recs(D1, "als", {"u1": ["a", "b", "c"], "u2": ["x", "y"]})
    run2 = recs(D2, "als", {"u1": ["c", "d"], "u3": ["z"]}, version="v2")
    other = recs(D2, "pop", {"u1": ["p"]})
    for rows in (run1, run2, other):
        write_run(spark, history, rows)

    first = update_current(spark, str(history), str(current), D1)
    assert current_rows(spark, current) == sorted(run1)
    assert first["inserted"] == 5 and first["rows"] == 5

    second = update_current(spark, str(history), str(current), D2, "als")
    # u1's list is replaced whole (rank 3 'c' of run 1 is gone), u2 keeps run 1's list, u3 is new.
    assert current_rows(spark, current) == sorted(run2 + [r for r in run1 if r[4] == "u2"])
    assert (second["updated"], second["inserted"], second["deleted"]) == (2, 1, 1)

    # A backfill of run 1 never replaces newer lists, but restores nothing it should not.
    update_current(spark, str(history), str(current), D1)
    assert current_rows(spark, current) == sorted(run2 + [r for r in run1 if r[4] == "u2"])

    # delete_absent: a full run drops the keys it no longer has (u2), for its own solution only.
    update_current(spark, str(history), str(current), D2, delete_absent=True)
    assert current_rows(spark, current) == sorted(run2 + other)


def test_a_rerun_of_the_same_date_replaces_lists(spark, tmp_path):
    history, current = tmp_path / "history", tmp_path / "current"
    write_run(spark, history, recs(D3, "als", {"u1": ["a", "b", "c"]}))
    update_current(spark, str(history), str(current), D3)
    fixed = recs(D3, "als", {"u1": ["b", "e"]}, version="v9")
    write_run(spark, history, fixed)
    result = update_current(spark, str(history), str(current), D3)
    assert current_rows(spark, current) == sorted(fixed)
    assert (result["updated"], result["deleted"], result["inserted"]) == (2, 1, 0)


def test_segments_are_keyed_by_segment(spark, tmp_path):
    history, current = tmp_path / "history", tmp_path / "current"
    run1 = [(D1, "aff", "v1", "item-affinity", "s1", "i9", r, f"u{r}", 1.0 - r / 10) for r in (1, 2, 3)]
    run2 = [(D2, "aff", "v1", "item-affinity", "s1", "i9", r, f"u{r + 5}", 1.0 - r / 10) for r in (1, 2)]
    write_run(spark, history, run1, SEGMENTS_DDL)
    write_run(spark, history, run2, SEGMENTS_DDL)
    update_current(spark, str(history), str(current), D1)
    update_current(spark, str(history), str(current), D2)
    assert current_rows(spark, current) == sorted(run2)


def test_bad_inputs(spark, tmp_path):
    history, current = tmp_path / "history", tmp_path / "current"
    with pytest.raises(DataError, match="not a readable Delta table"):
        update_current(spark, str(history), str(current), D1)
    write_run(spark, history, recs(D1, "als", {"u1": ["a"]}))
    with pytest.raises(DataError, match="no rows for run_date 2026-11-19"):
        update_current(spark, str(history), str(current), D2)
    # A current table of another shape.
    spark.createDataFrame([(D1, "x")], "run_date date, thing string").write.format("delta").save(str(current))
    with pytest.raises(JobError, match="lacks the columns"):
        update_current(spark, str(history), str(current), D1)


PAYLOAD = ("run_date", "solution", "solution_version", "recipe", "user_id", "rank", "item_id", "score", "reason")


def test_batch_jobs_keep_the_current_table_with_current(spark, tmp_path, capsys):
    """``recommend --current``: each run is merged after its commit; a later run with fewer users
    replaces only theirs, a backfill of the earlier date replaces nothing newer, and the current
    table may not be the output itself."""
    from batchrec import registry
    from batchrec.cli import main
    from batchrec.recipes import TrainedModel
    from test_recommend import artifacts

    seen = tmp_path / "interactions.csv"
    seen.write_text("USER_ID,ITEM_ID,TIMESTAMP\nu1,a,1700000000\n")
    solution = str(tmp_path / "solution")
    model = TrainedModel(recipe="user-personalization", params={}, artifacts=artifacts(spark), stats={})
    registry.save_version(spark, solution, model, {"datasets": {"interactions": str(seen), "format": "csv"}})
    history, current, one_user = tmp_path / "history", tmp_path / "current", tmp_path / "u1.jsonl"
    one_user.write_text('{"userId": "u1"}\n')
    common = ["recommend", "--solution", solution, "--output", str(history), "--current", str(current),
              "--master", "local[2]", "--log-level", "WARNING"]

    def rows(path, run_date=None):
        frame = spark.read.format("delta").load(str(path)).select(*PAYLOAD)
        if run_date is not None:
            frame = frame.where(f"run_date = DATE'{run_date.isoformat()}'")
        return sorted(tuple(r) for r in frame.collect())

    assert main(common + ["--run-date", D1.isoformat(), "--num-results", "3"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    first = rows(history, D1)
    assert rows(current) == first and len({r[4] for r in first}) == 4
    assert summary["current"] == {"rows": len(first), "inserted": len(first), "updated": 0, "deleted": 0}

    assert main(common + ["--run-date", D2.isoformat(), "--num-results", "2", "--input", str(one_user)]) == 0
    second = rows(history, D2)
    assert {r[4] for r in second} == {"u1"} and len(second) == 2
    # u1's three-item list is replaced whole by the two-item one; the other users keep run D1's.
    expected = sorted(second + [r for r in first if r[4] != "u1"])
    assert rows(current) == expected

    assert main(common + ["--run-date", D1.isoformat(), "--num-results", "3"]) == 0  # a backfill
    assert rows(current) == expected
    capsys.readouterr()

    before = rows(history)
    clash = ["recommend", "--solution", solution, "--output", str(history), "--current", str(history),
             "--run-date", D3.isoformat(), "--master", "local[2]", "--log-level", "WARNING"]
    assert main(clash) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "--current" in err[0] and "--output" in err[0], err
    assert rows(history) == before and rows(current) == expected

    # --current-delete-absent: a later run for u1 only deletes the other users' lists.
    assert main(common + ["--run-date", D3.isoformat(), "--num-results", "1", "--input", str(one_user),
                          "--current-delete-absent"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    third = rows(history, D3)
    assert rows(current) == third and {r[4] for r in third} == {"u1"}
    # Every earlier row but u1's first is gone: the other users' lists and u1's longer tail.
    assert summary["current"]["deleted"] == len(expected) - len(third)
    assert main(["recommend", "--solution", solution, "--output", str(history), "--current-delete-absent",
                 "--run-date", D3.isoformat(), "--master", "local[2]"]) == 2
    assert "--current-delete-absent needs --current" in capsys.readouterr().err
