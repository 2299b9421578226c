"""Personalize's batch output files: ``--jsonl DIR`` holds ``<input file name>.out`` per input file
(``all-users.out`` / ``all-items.out`` without ``--input``), one line per input line in input order,
nothing else (no part files, ``_SUCCESS`` or ``.crc``); lines whose ``filterValues`` no filter
applies are counted and warned about."""

from __future__ import annotations

import json
import os

import pytest

from batchrec import locations as L
from batchrec.cli import main
from batchrec.errors import UsageError
from batchrec.locations import Location, check_locations
from batchrec.sinks import jsonl as jsonl_sink
from cli_summary import run

COMMON = ["--master", "local[2]", "--run-date", "2024-01-31", "--log-level", "WARNING"]
HEADER = "USER_ID,ITEM_ID,TIMESTAMP\n"
ROWS = "".join(f"u{u},i{(u * 7 + k) % 5},{1700000000 + 60 * (u * 3 + k)}\n" for u in range(8) for k in range(3))


def everything_in(folder) -> list[str]:
    """Every entry of ``folder``, hidden ones included."""
    return sorted(os.listdir(folder))


@pytest.fixture(scope="module")
def solution(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("jsonl-out")
    csv = root / "interactions.csv"
    csv.write_text(HEADER + ROWS)
    path = root / "solution"
    assert main(["train", *COMMON, "--min-interactions", "1", "--min-users", "0", "--recipe",
                 "popularity-count", "--interactions", str(csv), "--solution", str(path)]) == 0
    return path


def test_an_input_file_gives_its_name_dot_out_with_one_line_per_input_line(spark, capsys, solution, tmp_path):
    source = tmp_path / "users.jsonl"
    requests = ['{"userId": "u1"}', "not json", '{"userId": "u2"}', '{"userId": "u1"}', '{"userId": "nobody"}']
    source.write_text("\n".join(requests) + "\n")
    out = tmp_path / "jsonl"
    code, summary, err = run(capsys, "recommend", *COMMON, "--solution", solution, "--input", source,
                             "--output", tmp_path / "recs", "--jsonl", out, "--num-results", "2")
    assert code == 0, err
    assert everything_in(out) == ["users.jsonl.out"]  # no part-*, _SUCCESS or .crc files
    lines = [json.loads(x) for x in (out / "users.jsonl.out").read_text().splitlines()]
    assert len(lines) == len(requests)
    assert [line["input"] for line in lines] == [{"userId": "u1"}, "not json", {"userId": "u2"},
                                                 {"userId": "u1"}, {"userId": "nobody"}]
    assert lines[1]["output"] is None and "line 2 of" in lines[1]["error"]
    assert summary["jsonl_files"] == ["users.jsonl.out"]
    assert summary["filter_values_not_applied"] == 0 and summary["warnings"] == []
    # Nothing is left beside the folder either (the temporary and the replaced one are gone).
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("jsonl")) == ["jsonl"]

    # A re-run replaces the folder's files (a previous .out output is accepted).
    source.write_text('{"userId": "u3"}\n')
    assert run(capsys, "recommend", *COMMON, "--solution", solution, "--input", source,
               "--output", tmp_path / "recs", "--jsonl", out)[0] == 0
    assert everything_in(out) == ["users.jsonl.out"]
    assert [json.loads(x)["input"] for x in (out / "users.jsonl.out").read_text().splitlines()] == [
        {"userId": "u3"}]


def test_every_user_goes_to_all_users_out_and_every_item_to_all_items_out(spark, capsys, solution, tmp_path):
    out = tmp_path / "jsonl"
    code, summary, err = run(capsys, "recommend", *COMMON, "--solution", solution, "--output",
                             tmp_path / "recs", "--jsonl", out, "--num-results", "1")
    assert code == 0, err
    assert everything_in(out) == ["all-users.out"]
    users = [json.loads(x)["input"]["userId"] for x in (out / "all-users.out").read_text().splitlines()]
    assert users == sorted(f"u{u}" for u in range(8)) and summary["jsonl_files"] == ["all-users.out"]

    assert jsonl_sink.unnamed_output("items") == "all-items.out"
    assert jsonl_sink.unnamed_output("attributes") == "all-items.out"
    assert jsonl_sink.unnamed_output("users") == jsonl_sink.ALL_USERS


def test_a_folder_of_inputs_gives_one_out_per_file_in_input_order(spark, capsys, solution, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    first = [f'{{"userId": "u{i % 8}", "n": {i}}}' for i in range(400)]
    (inputs / "big batch.jsonl").write_text("\n".join(first) + "\n")  # a space in the name
    (inputs / "small.json").write_text('{"userId": "u5"}\n\n{"userId": "u6"}\n')  # a blank line
    out = tmp_path / "jsonl"
    spark.conf.set("spark.sql.files.maxPartitionBytes", "2048")  # several splits per file
    try:
        code, summary, err = run(capsys, "recommend", *COMMON, "--solution", solution, "--input", inputs,
                                 "--output", tmp_path / "recs", "--jsonl", out, "--num-results", "1")
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    assert code == 0, err
    assert everything_in(out) == ["big batch.jsonl.out", "small.json.out"]
    big = [json.loads(x)["input"]["n"] for x in (out / "big batch.jsonl.out").read_text().splitlines()]
    assert big == list(range(400))
    small = [json.loads(x)["input"]["userId"] for x in (out / "small.json.out").read_text().splitlines()]
    assert small == ["u5", "u6"]


def test_two_input_files_with_one_name_are_refused_before_anything_is_written(spark, capsys, solution, tmp_path):
    # Personalize names each output after its input file, so a/users.jsonl and b/users.jsonl collide.
    for folder in ("a", "b"):
        (tmp_path / "in" / folder).mkdir(parents=True)
        (tmp_path / "in" / folder / "users.jsonl").write_text('{"userId": "u1"}\n')
    out = tmp_path / "jsonl"
    code, _, err = run(capsys, "recommend", *COMMON, "--solution", solution, "--input",
                       f"{tmp_path}/in/*/users.jsonl", "--output", tmp_path / "recs", "--jsonl", out)
    assert code == 2 and "two input files are named 'users.jsonl'" in err
    assert not out.exists() and not list(tmp_path.glob("jsonl.tmp-*"))
    assert not (tmp_path / "recs").exists()  # refused before the Delta output too


def test_filter_values_that_no_filter_applies_are_counted_and_warned_about(spark, capsys, solution, tmp_path):
    source = tmp_path / "users.jsonl"
    source.write_text('{"userId": "u1", "filterValues": {"GENRES": "\\"comedy\\""}}\n'
                      '{"userId": "u2", "filterValues": {}}\n'
                      '{"userId": "u3"}\n'
                      '{"userId": "u4", "filterValues": {"X": "\\"1\\""}}\n')
    code, summary, err = run(capsys, "recommend", "--master", "local[2]", "--run-date", "2024-01-31",
                             "--solution", solution, "--input", source, "--output", tmp_path / "recs",
                             "--jsonl", tmp_path / "jsonl", "--summary-file", tmp_path / "summary.json")
    assert code == 0, err
    assert summary["filter_values_not_applied"] == 2
    assert summary["warnings"] and "2 input line(s) carry \"filterValues\"" in summary["warnings"][0]
    assert "unfiltered" in err  # the log says so too
    assert json.loads((tmp_path / "summary.json").read_text())["filter_values_not_applied"] == 2
    lines = [json.loads(x) for x in (tmp_path / "jsonl" / "users.jsonl.out").read_text().splitlines()]
    assert lines[0]["input"]["filterValues"] == {"GENRES": '"comedy"'}  # echoed untouched


def test_output_names_follow_personalize(tmp_path):
    assert jsonl_sink.output_name("file:///data/in/users.jsonl") == "users.jsonl.out"
    assert jsonl_sink.output_name("s3a://bucket/in/batch%201.json") == "batch 1.json.out"
    assert jsonl_sink.output_name("hdfs://nn:8020/x/y/requests") == "requests.out"
    assert jsonl_sink.output_name("", unnamed="all-items.out") == "all-items.out"


def test_a_previous_out_folder_is_replaceable_and_anything_else_is_refused(spark, tmp_path):
    previous = tmp_path / "previous"
    previous.mkdir()
    (previous / "users.jsonl.out").write_text('{"input": {}}\n')
    (previous / "all-users.out").write_text("")
    check_locations(spark, [], [Location("--jsonl", str(previous), L.KIND_FOLDER)])
    for name, content in (("notes.txt", "mine"), ("users.jsonl", '{"userId": "u1"}\n')):
        other = tmp_path / f"other-{name}"
        other.mkdir()
        (other / "users.jsonl.out").write_text("")
        (other / name).write_text(content)
        with pytest.raises(UsageError) as info:
            check_locations(spark, [], [Location("--jsonl", str(other), L.KIND_FOLDER)])
        assert f"it holds {name}" in str(info.value)
        assert "a previous JSON-lines output (only <input file name>.out files)" in str(info.value)
        assert (other / name).read_text() == content
    nested = tmp_path / "nested"
    (nested / "x.out").mkdir(parents=True)  # a folder named like an output file
    with pytest.raises(UsageError, match=r"it holds x\.out/ \(a folder\)"):
        check_locations(spark, [], [Location("--jsonl", str(nested), L.KIND_FOLDER)])
