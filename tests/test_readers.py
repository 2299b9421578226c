"""Readers: formats, header handling, renames, source files, and every bad-input path."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchrec import columns
from batchrec.datasets.readers import CORRUPT_RECORD, read_dataset, resolve_format
from batchrec.errors import DataError

HEADER = "user_id,Item_Id,timestamp,EVENT_TYPE\n"


def _csv(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def test_csv_columns_upper_cased_values_kept_as_strings(spark, tmp_path):
    path = _csv(tmp_path / "i.csv", HEADER + "u1,i1,1700000000,click\nu2,i2,oops,\n")
    df = read_dataset(spark, str(path), "interactions")
    assert df.columns[:4] == ["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE"]
    assert dict(df.dtypes)["TIMESTAMP"] == "string"
    rows = sorted((r.USER_ID, r.TIMESTAMP, r.EVENT_TYPE, r[columns.SOURCE_FILE]) for r in df.collect())
    assert rows == [("u1", "1700000000", "click", f"file:{path}"), ("u2", "oops", None, f"file:{path}")]


def test_renames_map_movielens_columns(spark, tmp_path):
    path = _csv(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n")
    df = read_dataset(spark, str(path), "interactions",
                      renames=[("userid", "USER_ID"), ("movieId", "item_id"), ("rating", "EVENT_VALUE"),
                               ("timestamp", "TIMESTAMP"), ("absent", "X")])
    assert [tuple(r)[:4] for r in df.collect()] == [("1", "31", "2.5", "1260759144")]
    assert df.columns[:4] == ["USER_ID", "ITEM_ID", "EVENT_VALUE", "TIMESTAMP"]


def test_formats_are_told_from_names_and_directories(spark, tmp_path):
    rows = [("u1", "i1", 1700000000)]
    frame = spark.createDataFrame(rows, "USER_ID string, ITEM_ID string, TIMESTAMP long")
    frame.write.parquet(str(tmp_path / "pq"))
    frame.write.format("delta").save(str(tmp_path / "dl"))
    _csv(tmp_path / "one.jsonl", '{"user_id": "u1", "item_id": "i1", "timestamp": 1700000000}\n')
    assert resolve_format(spark, str(tmp_path / "pq")) == "parquet"
    assert resolve_format(spark, str(tmp_path / "dl")) == "delta"
    assert resolve_format(spark, str(tmp_path / "one.jsonl")) == "json"
    for name in ("pq", "dl", "one.jsonl"):
        df = read_dataset(spark, str(tmp_path / name), "interactions")
        got = [(r.USER_ID, r.ITEM_ID, str(r.TIMESTAMP)) for r in df.collect()]
        assert got == [("u1", "i1", "1700000000")], name
        assert df.first()[columns.SOURCE_FILE].startswith(f"file:{tmp_path / name}")
    # JSON numbers stay text so that validation, not the reader, decides what parses.
    assert dict(read_dataset(spark, str(tmp_path / "one.jsonl"), "interactions").dtypes)["TIMESTAMP"] == "string"


def test_unknown_extension_asks_for_format(spark, tmp_path):
    path = _csv(tmp_path / "data.xlsx", "x")
    with pytest.raises(DataError, match=r"data.xlsx: cannot tell the dataset format .*--format"):
        read_dataset(spark, str(path), "interactions")


def test_missing_path_and_empty_directory(spark, tmp_path):
    with pytest.raises(DataError, match=rf"{tmp_path}/nope.csv: no such file or directory"):
        read_dataset(spark, str(tmp_path / "nope.csv"), "interactions")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "_SUCCESS").write_text("")
    with pytest.raises(DataError, match=rf"{tmp_path}/empty: the directory holds no data files"):
        read_dataset(spark, str(tmp_path / "empty"), "interactions")


def test_empty_file(spark, tmp_path):
    path = _csv(tmp_path / "i.csv", "")
    with pytest.raises(DataError, match=r"i.csv: the interactions file is empty; expected a header row"):
        read_dataset(spark, str(path), "interactions")


def test_csv_without_header_is_recognised(spark, tmp_path):
    path = _csv(tmp_path / "i.csv", "1,31,2.5,1260759144\n1,1029,3.0,1260759179\n")
    with pytest.raises(DataError) as err:
        read_dataset(spark, str(path), "interactions")
    message = str(err.value)
    assert f"{path}: the interactions dataset is missing required column(s) USER_ID, ITEM_ID, TIMESTAMP" in message
    assert "The first line '1,31,2.5,1260759144' looks like data, not a header row" in message


@pytest.mark.parametrize("delimiter, flag", [(";", "--delimiter ';'"), ("\t", "--delimiter $'\\t'"),
                                             ("|", "--delimiter '|'")])
def test_wrong_delimiter_is_named(spark, tmp_path, delimiter, flag):
    text = delimiter.join(["USER_ID", "ITEM_ID", "TIMESTAMP"]) + "\n" + delimiter.join(["u", "i", "1"]) + "\n"
    path = _csv(tmp_path / "i.csv", text)
    with pytest.raises(DataError) as err:
        read_dataset(spark, str(path), "interactions")
    assert f"{path}: the header has a single column" in str(err.value)
    assert flag in str(err.value)
    assert read_dataset(spark, str(path), "interactions", delimiter=delimiter).columns[:3] == \
        ["USER_ID", "ITEM_ID", "TIMESTAMP"]


def test_missing_required_column_lists_expected_and_found(spark, tmp_path):
    path = _csv(tmp_path / "i.csv", "USER_ID,ITEM,TIMESTAMP\nu,i,1\n")
    with pytest.raises(DataError) as err:
        read_dataset(spark, str(path), "interactions")
    assert str(err.value).startswith(
        f"{path}: the interactions dataset is missing required column(s) ITEM_ID; "
        "expected USER_ID, ITEM_ID, TIMESTAMP; found USER_ID, ITEM, TIMESTAMP.")
    assert "--rename SOURCE=TARGET" in str(err.value)


def test_columns_equal_but_for_case_are_refused(spark, tmp_path):
    path = _csv(tmp_path / "u.csv", "user_id,USER_ID\na,b\n")
    with pytest.raises(DataError, match=r"u.csv: the header names the column USER_ID 2 times \('user_id', 'USER_ID'\)"):
        read_dataset(spark, str(path), "users")


def test_malformed_rows_and_a_10mb_field_are_read_whole(spark, tmp_path):
    big = "x" * (10 * 1024 * 1024)
    path = _csv(tmp_path / "i.csv", HEADER + f"u1,i1,1,{big}\nu2,i2\n")
    rows = {r.USER_ID: r for r in read_dataset(spark, str(path), "interactions").collect()}
    assert len(rows["u1"].EVENT_TYPE) == len(big)
    assert rows["u1"][CORRUPT_RECORD] is None
    assert rows["u2"][CORRUPT_RECORD] == "u2,i2"
