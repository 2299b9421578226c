"""``batchrec validate`` end to end through ``batchrec.cli.main``: exit codes, stderr, reports."""

from __future__ import annotations

import json

import pytest

from batchrec.cli import main
from batchrec.datasets.schema import parse_personalize_schema

MOVIELENS_RENAMES = ["--rename", "userId=USER_ID", "--rename", "movieId=ITEM_ID",
                     "--rename", "rating=EVENT_VALUE", "--rename", "timestamp=TIMESTAMP"]
COMMON = ["--master", "local[2]", "--run-date", "2024-01-31", "--log-level", "WARNING"]


def _validate(capsys, *args):
    code = main(["validate", *COMMON, *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_movielens_ratings_pass(spark, movielens_ratings, tmp_path, capsys):
    report = tmp_path / "report.json"
    code, out, err = _validate(capsys, "--interactions", movielens_ratings, *MOVIELENS_RENAMES,
                               "--report", report)
    assert (code, err) == (0, "")
    assert "interactions  100,836    100,836  0         0.00%" in out
    assert "users with >= 2 interactions: 610 (need 25) ok" in out
    summary = json.loads(report.read_text())
    assert summary["passed"] is True
    assert summary["datasets"]["interactions"]["rows_read"] == 100836
    assert summary["minimums"]["interactions"] == 100836


def test_corrupted_movielens_copy_reports_every_problem(spark, movielens_ratings, tmp_path, capsys):
    lines = movielens_ratings.read_text().splitlines()
    header, rows = lines[0], lines[1:2001]
    bad = []
    for i in range(10):  # milliseconds
        user, movie, rating, ts = rows[i].split(",")
        rows[i] = f"{user},{movie},{rating},{int(ts) * 1000}"
    for i in range(10, 15):
        rows[i] = "," + rows[i].split(",", 1)[1]  # empty USER_ID
    for i in range(15, 18):
        user, _, rest = rows[i].split(",", 2)
        rows[i] = f"{user},,{rest}"  # empty ITEM_ID
    for i in range(18, 24):
        user, movie, rating, ts = rows[i].split(",")
        rows[i] = f"{user},{movie},-{rating},{ts}"
    for i in range(24, 26):
        user, movie, rating, ts = rows[i].split(",")
        rows[i] = f"{user},{movie},NaN,{ts}"
    rows += rows[100:105]  # exact duplicates
    payload = "\n".join([header] + rows).encode() + b"\n"
    for i in range(4):  # bytes that are not UTF-8 in the movie ID
        bad.append(f"7{i},".encode() + b"31\xff\xfe,2.5,964982703\n")
    path = tmp_path / "ratings-corrupted.csv"
    path.write_bytes(payload + b"".join(bad))
    report, rejects = tmp_path / "report.json", tmp_path / "rejects"

    code, out, err = _validate(capsys, "--interactions", path, *MOVIELENS_RENAMES,
                               "--report", report, "--rejects", rejects)
    assert code == 1
    expected = {"missing_id": 8, "invalid_utf8": 4, "timestamp_in_milliseconds": 10,
                "nan_value": 2, "negative_event_value": 6, "duplicate": 5}
    data = json.loads(report.read_text())["datasets"]["interactions"]
    assert data["rejects_by_reason"] == expected
    assert (data["rows_read"], data["rows_rejected"], data["rows_valid"]) == (2009, 35, 1974)
    mixed = "mixed timestamp units: 10 rows look like milliseconds, 1999 like seconds"
    assert err.startswith(f"batchrec: error: validation failed: interactions {path}: 35 of 2009 rows "
                          "rejected (1.74%), more than the allowed 1.00%: missing_id (ITEM_ID): 3, "
                          "missing_id (USER_ID): 5, invalid_utf8 (ITEM_ID): 4, "
                          "timestamp_in_milliseconds (TIMESTAMP): 10, nan_value (EVENT_VALUE): 2, "
                          "negative_event_value (EVENT_VALUE): 6, duplicate: 5"), err
    assert mixed in err and f"rejected rows: {rejects}" in err
    # The first 2000 ratings come from 18 users: the minimum check reports that too.
    assert "only 18 users with at least 2 interactions; at least 25 are needed" in err
    assert "interactions  missing_id                 USER_ID      5" in out
    assert mixed in out and "Result: FAILED" in out
    assert spark.read.format("delta").load(str(rejects)).count() == 35


def test_minimums_fail_unless_lowered(spark, tmp_path, capsys):
    path = tmp_path / "i.csv"
    path.write_text("USER_ID,ITEM_ID,TIMESTAMP\nu1,i1,1700000000\nu1,i2,1700000000\nu2,i1,1700000000\n")
    code, out, err = _validate(capsys, "--interactions", path)
    assert code == 1
    assert "only 3 valid interactions; at least 1000 are needed" in err
    assert "only 1 users with at least 2 interactions; at least 25 are needed" in err
    code, out, err = _validate(capsys, "--interactions", path, "--min-interactions", 3, "--min-users", 1)
    assert (code, err) == (0, ""), err
    assert "Result: PASSED" in out


@pytest.mark.parametrize("content, expected", [
    (None, "{path}: no such file or directory"),
    ("USER_ID;ITEM_ID;TIMESTAMP\nu;i;1\n", "probably delimited by ';', not ','; pass --delimiter ';'"),
    ("USER_ID,ITEM,TIMESTAMP\nu,i,1\n", "missing required column(s) ITEM_ID; expected USER_ID, ITEM_ID, "
                                        "TIMESTAMP; found USER_ID, ITEM, TIMESTAMP"),
    ("1,31,2.5,1260759144\n", "The first line '1,31,2.5,1260759144' looks like data, not a header row"),
])
def test_bad_inputs_exit_1_with_a_clear_message(spark, tmp_path, capsys, content, expected):
    path = tmp_path / "i.csv"
    if content is not None:
        path.write_text(content)
    code, out, err = _validate(capsys, "--interactions", path)
    assert code == 1
    assert err.startswith(f"batchrec: error: {path}")
    assert expected.format(path=path) in err


def test_empty_directory(spark, tmp_path, capsys):
    (tmp_path / "d").mkdir()
    code, _, err = _validate(capsys, "--interactions", tmp_path / "d")
    assert (code, err.strip()) == (1, f"batchrec: error: {tmp_path / 'd'}: the directory holds no data files")


def test_ten_megabyte_field_is_rejected_as_oversize(spark, tmp_path, capsys):
    path = tmp_path / "i.csv"
    rows = "".join(f"u{i},i{i},1700000000\n" for i in range(3))
    path.write_text("USER_ID,ITEM_ID,TIMESTAMP\n" + rows + f"u9,{'x' * 10_000_000},1700000000\n")
    code, out, err = _validate(capsys, "--interactions", path, "--min-interactions", 0, "--min-users", 0,
                               "--max-reject-fraction", 0.5, "--report", tmp_path / "r.json")
    assert (code, err) == (0, "")
    data = json.loads((tmp_path / "r.json").read_text())["datasets"]["interactions"]
    assert data["rejects_by_reason"] == {"id_too_long": 1}
    assert len(data["reasons"][0]["example"]) < 1200  # the record keeps 1000 chars of the field


def test_infer_schema_prints_a_schema_to_pass_back(spark, tmp_path, capsys):
    path = tmp_path / "items.csv"
    path.write_text("item_id,genres,price,year\ni1,a|b,9.5,1999\ni2,c,,2001\n")
    items_only = tmp_path / "i.csv"
    items_only.write_text("USER_ID,ITEM_ID,TIMESTAMP\nu1,i1,1700000000\n")
    code, out, err = _validate(capsys, "--interactions", items_only, "--items", path, "--infer-schema")
    assert (code, err) == (0, "")
    items_json = out.split("# items: ")[1].split("\n", 1)[1]
    schema = parse_personalize_schema(json.loads(items_json))
    assert schema.to_avro()["fields"] == [
        {"name": "ITEM_ID", "type": "string"},
        {"name": "GENRES", "type": "string", "categorical": True},
        {"name": "PRICE", "type": ["double", "null"]},
        {"name": "YEAR", "type": "int"},
    ]
    schema_file = tmp_path / "items.json"
    schema_file.write_text(items_json)
    code, out, err = _validate(capsys, "--interactions", items_only, "--items", path, "--schema", schema_file,
                               "--min-interactions", 1, "--min-users", 0)
    assert (code, err) == (0, "")
