"""A hostile user's inputs (issue 9): nothing lost, nothing half-parsed, one line per failure.

Each class of the issue has its tests. Every test checks the exit code, the one-line message, and
that the inputs and earlier outputs are byte-for-byte unchanged afterwards. Commands run in-process
through ``batchrec.cli.main`` (sharing the session's Spark); the tests that must see the JVM's own
console output run the CLI in a subprocess.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from batchrec import fs, locations, registry
from batchrec.batch import inputs
from batchrec.cli import main
from batchrec.errors import JobError, UsageError
from batchrec.recipes import TrainedModel
from batchrec.sinks import jsonl as jsonl_sink

REPO = Path(__file__).resolve().parents[1]
COMMON = ["--master", "local[2]", "--run-date", "2024-01-31", "--log-level", "WARNING"]
LOW_LIMITS = ["--min-interactions", "1", "--min-users", "0", "--max-reject-fraction", "1"]
HEADER = "USER_ID,ITEM_ID,TIMESTAMP\n"
ROWS = "".join(f"u{u},i{(u * 7 + k) % 5},{1700000000 + 60 * (u * 3 + k)}\n" for u in range(8) for k in range(3))
TRACE_MARKERS = ("Traceback (most recent call last)", "\tat ", "Caused by:", "Py4JJavaError")


def snapshot(*paths: Path) -> dict[str, bytes]:
    """Every file under ``paths`` (folders walked, hidden files included) with its bytes."""
    out: dict[str, bytes] = {}
    for root in paths:
        root = Path(root)
        if root.is_file():
            out[str(root)] = root.read_bytes()
            continue
        for folder, _, files in os.walk(root):
            for name in files:
                path = Path(folder) / name
                out[str(path)] = path.read_bytes()
    return out


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    """The single line of stderr (fails when there are more or none)."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert not any(marker in lines[0] for marker in TRACE_MARKERS), lines[0]
    return lines[0]


@pytest.fixture()
def data(tmp_path):
    """A small valid interactions CSV and a folder holding one."""
    csv = tmp_path / "x.csv"
    csv.write_text(HEADER + ROWS)
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "part-0.csv").write_text(HEADER + ROWS)
    return csv, folder


# --- 1. Outputs that overlap inputs, other outputs or solutions --------------------------------


@pytest.mark.parametrize("spelling", ["{d}/x.csv", "file://{d}/x.csv", "file://{d}/./x.csv/", "{d}/sub/../x.csv"])
def test_a_report_over_its_own_input_is_refused_in_every_spelling(spark, capsys, data, spelling):
    csv, _ = data
    before = snapshot(csv.parent)
    report = spelling.format(d=csv.parent)
    code, out, err = cli(capsys, "validate", *COMMON, *LOW_LIMITS, "--interactions", csv, "--report", report)
    assert code == 2
    line = one_line(err)
    assert line.startswith(f"batchrec: usage error: --report {report}")
    assert "is the same location as the input --interactions" in line and "choose another path for --report" in line
    assert snapshot(csv.parent) == before


def test_rejects_inside_the_input_folder_are_refused(spark, capsys, data):
    _, folder = data
    before = snapshot(folder)
    code, _, err = cli(capsys, "validate", *COMMON, *LOW_LIMITS, "--interactions", folder,
                       "--rejects", folder / "rejects")
    assert code == 2
    assert f"--rejects {folder}/rejects is inside the input --interactions {folder}:" in one_line(err)
    assert snapshot(folder) == before and not (folder / "rejects").exists()


def test_two_outputs_may_not_overlap(spark, capsys, data, tmp_path):
    csv, _ = data
    before = snapshot(tmp_path)
    code, _, err = cli(capsys, "validate", *COMMON, *LOW_LIMITS, "--interactions", csv,
                       "--rejects", tmp_path / "out", "--report", tmp_path / "out" / "r.json")
    assert code == 2 and "--report" in one_line(err) and "is inside the output --rejects" in err
    code, _, err = cli(capsys, "evaluate", *COMMON, "--recipe", "popularity-count", "--interactions", csv,
                       "--report", tmp_path / "r.json", "--html", tmp_path / "r.json")
    assert code == 2 and "--html" in one_line(err) and "is the same location as the output --report" in err
    assert snapshot(tmp_path) == before


def test_a_solution_may_not_be_written_over_or_into_its_datasets(spark, capsys, data):
    csv, folder = data
    before = snapshot(csv.parent)
    for solution, relation in ((folder, "is the same location as"), (folder / "model", "is inside"),
                               (csv.parent, "contains")):
        code, _, err = cli(capsys, "train", *COMMON, *LOW_LIMITS[:4], "--recipe", "popularity-count",
                           "--interactions", folder, "--solution", solution, "--no-evaluate")
        assert code == 2, err
        assert f"--solution {solution} {relation} the input --interactions {folder}:" in one_line(err)
    assert snapshot(csv.parent) == before


def test_a_summary_file_is_an_output_like_any_other(spark, capsys, data, tmp_path):
    """--summary-file is checked with the command's own locations, before anything is written."""
    csv, folder = data
    solution = tmp_path / "solution"
    before = snapshot(tmp_path)
    train = ["train", *COMMON, *LOW_LIMITS[:4], "--recipe", "popularity-count", "--no-evaluate",
             "--solution", solution]
    for interactions, summary, expected in (
            (csv, csv, "is the same location as the input --interactions"),
            (folder, folder / "s.json", "is inside the input --interactions"),
            (folder, folder, "is a folder; expected the path of a file"),
            (csv, solution / "s.json", "is inside the output --solution")):
        code, _, err = cli(capsys, *train, "--interactions", interactions, "--summary-file", summary)
        assert code == 2, err
        line = one_line(err)
        assert line.startswith(f"batchrec: usage error: --summary-file {summary}") and expected in line, line
    assert snapshot(tmp_path) == before and not solution.exists()
    a_folder = tmp_path / "summary-dir"
    a_folder.mkdir()
    code, _, err = cli(capsys, "validate", *COMMON, *LOW_LIMITS, "--interactions", csv, "--summary-file", a_folder)
    assert code == 2 and "is a folder; expected the path of a file" in one_line(err)


def test_existing_outputs_of_another_kind_are_refused_never_replaced(spark, capsys, data, tmp_path):
    csv, _ = data
    report_dir = tmp_path / "report.json"
    report_dir.mkdir()
    (report_dir / "keep.txt").write_text("keep")
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("mine")
    a_file = tmp_path / "table"
    a_file.write_text("a file where a table would go")
    before = snapshot(tmp_path)
    cases = [
        (["validate", "--interactions", csv, "--report", report_dir], "is a folder; expected the path of a file"),
        (["validate", "--interactions", csv, "--rejects", a_file], "is a file; expected a folder (a Delta table)"),
        (["validate", "--interactions", csv, "--rejects", plain], "exists and is not a Delta table"),
        (["validate", "--interactions", csv, "--report", a_file / "r.json"], "table is a file, not a folder"),
        (["generate", "--users", "5", "--items", "5", "--interactions", "20", "--output", plain],
         "exists and is not a previous generated dataset"),
        (["train", *LOW_LIMITS[:4], "--recipe", "popularity-count", "--interactions", csv, "--solution", plain],
         "exists and is not a solution folder"),
    ]
    for args, expected in cases:
        code, _, err = cli(capsys, args[0], *COMMON, *(LOW_LIMITS if args[0] == "validate" else []), *args[1:])
        assert code == 2, (args, err)
        assert expected in one_line(err), (args, err)
    assert snapshot(tmp_path) == before  # nothing replaced, and no temporary file left behind


def test_an_output_may_not_overwrite_the_configuration(spark, capsys, data, tmp_path):
    csv, _ = data
    config = tmp_path / "job.toml"
    config.write_text("[validation]\nmax_id_length = 256\n")
    before = snapshot(config)
    code, _, err = cli(capsys, "validate", *COMMON, *LOW_LIMITS, "--interactions", csv,
                       "--config", config, "--report", config)
    assert code == 2 and "is the same location as the input --config" in one_line(err)
    assert snapshot(config) == before


def test_a_report_is_written_atomically_and_leaves_no_temporary_file(spark, capsys, data, tmp_path):
    csv, _ = data
    report = tmp_path / "out" / "r.json"
    code, _, _ = cli(capsys, "validate", *COMMON, *LOW_LIMITS, "--interactions", csv, "--report", report)
    assert code == 0 and json.loads(report.read_text())["passed"] is True
    assert sorted(os.listdir(report.parent)) == ["r.json"]  # no .tmp-*, no .crc
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(UsageError, match="is a folder"):
        fs.write_text_atomic(spark, str(folder), "{}")
    assert os.listdir(folder) == []
    assert sorted(os.listdir(tmp_path)) == ["data", "folder", "out", "x.csv"]


# --- 2. One solution, several spellings --------------------------------------------------------


def test_one_solution_has_one_key_whatever_its_spelling(spark, tmp_path):
    solution = tmp_path / "sol"
    (solution / "versions").mkdir(parents=True)
    keys = {locations.check_locations(spark, [locations.Location("--solution", s, locations.KIND_SOLUTION)],
                                      [])["--solution"]
            for s in (str(solution), f"{solution}/", f"file://{solution}", f"file:{solution}//")}
    assert keys == {f"file:{solution}"}


def test_a_rerun_under_another_spelling_of_the_solution_replaces_the_run(spark, capsys, popularity_solution,
                                                                        tmp_path):
    table = tmp_path / "recs"
    for spelling in (str(popularity_solution), f"{popularity_solution}/", f"file://{popularity_solution}"):
        code, _, err = cli(capsys, "recommend", *COMMON, "--solution", spelling, "--output", table,
                           "--num-results", "2")
        assert code == 0, err
        rows = spark.read.format("delta").load(str(table)).collect()
        assert {r.solution for r in rows} == {f"file:{popularity_solution}"}
        per_user = Counter(r.user_id for r in rows)
        assert set(per_user.values()) == {2}, spelling  # replaced, never 4 or 6 per user


def test_an_empty_request_file_is_a_data_error_and_keeps_the_run(spark, capsys, popularity_solution, tmp_path):
    table = tmp_path / "recs"
    assert cli(capsys, "recommend", *COMMON, "--solution", popularity_solution, "--output", table)[0] == 0
    before = sorted(map(tuple, spark.read.format("delta").load(str(table)).collect()))
    for name, content in (("empty.jsonl", b""), ("blank.jsonl", b"\n  \n\n")):
        source = tmp_path / name
        source.write_bytes(content)
        code, _, err = cli(capsys, "recommend", *COMMON, "--solution", popularity_solution, "--input", source,
                           "--output", table)
        assert code == 1
        assert one_line(err) == (f"batchrec: error: --input {source}: no request line in it (empty or "
                                 "blank); nothing was written")
    assert sorted(map(tuple, spark.read.format("delta").load(str(table)).collect())) == before


# --- 3. Request lines that are not exactly one JSON object ---------------------------------------


HOSTILE_LINES = [
    b'{"userId": "u1"}',
    b'{"userId": "u13"} trailing',
    b'{"userId": "u1"}{"userId": "u2"}',
    b'{"userId": "u1"}, {"userId": "u2"}',
    b'{"userId": "u1"}] , ["x"',
    b'[{"userId": "u1"}]',
    b'{"userId": {"x": [1, 2}}',
    b'{"userId": {"x": 1}}',
    b'{"userId": "u1", "userId": "u2"}',
    b'{"userId": "u1", "n": NaN}',
    b'{"userId": "caf\xe9"}',
    b'\xff\xfe{"userId": "u1"}',
    b'{"userId": "u2", "filterValues": {"G": "\\"x\\""}}   ',
]


def test_request_lines_must_be_exactly_one_json_object_and_output_stays_json(spark, tmp_path):
    path = tmp_path / "requests.jsonl"
    path.write_bytes(b"\n".join(HOSTILE_LINES) + b"\n")
    requests = inputs.read_requests(spark, str(path)).orderBy(inputs.POSITION)
    rows = requests.collect()
    assert [r[inputs.ERROR] is None for r in rows] == [True] + [False] * 11 + [True]
    assert [r["USER_ID"] for r in rows if r[inputs.ERROR] is None] == ["u1", "u2"]
    errors = [r[inputs.ERROR].split(": ", 1)[1] for r in rows if r[inputs.ERROR]]
    assert errors[0].startswith("text after the JSON object")
    assert errors[9].startswith("not valid UTF-8 text") and errors[10].startswith("not valid UTF-8 text")
    assert errors[6] == '"userId" is not a string; expected a non-empty string'
    recs = spark.createDataFrame([("u1", 1, "i1", 0.5)], "USER_ID string, rank int, ITEM_ID string, score double")
    lines = [r[0] for r in jsonl_sink.recommendation_lines(requests, recs, with_scores=True)
             .orderBy(inputs.POSITION).select(jsonl_sink.VALUE).collect()]
    strict = [json.loads(line, parse_constant=_no_constants) for line in lines]  # every line is JSON
    assert strict[0] == {"input": {"userId": "u1"}, "output": {"recommendedItems": ["i1"], "scores": [0.5]},
                         "error": None}
    assert strict[1]["input"] == '{"userId": "u13"} trailing' and strict[1]["output"] is None
    assert strict[10]["input"] == '{"userId": "caf\ufffd"}'
    assert strict[-1]["input"] == {"userId": "u2", "filterValues": {"G": '"x"'}}
    assert path.read_bytes() == b"\n".join(HOSTILE_LINES) + b"\n"


def test_the_sink_never_echoes_anything_but_a_json_object(spark):
    # Even a request frame built elsewhere cannot make the sink write a line that is not JSON.
    requests = spark.createDataFrame(
        [("f", 0, 1, '{"userId": "u1"} trailing', "u1", None), ("f", 1, 2, '"just a string"', "u1", None)],
        "_file string, _position long, _line long, _raw string, USER_ID string, error string")
    recs = spark.createDataFrame([("u1", 1, "i1", 0.5)], "USER_ID string, rank int, ITEM_ID string, score double")
    got = [json.loads(r[0]) for r in jsonl_sink.recommendation_lines(requests, recs, with_scores=True)
           .orderBy(inputs.POSITION).select(jsonl_sink.VALUE).collect()]
    assert [g["input"] for g in got] == ['{"userId": "u1"} trailing', '"just a string"']


def _no_constants(name):
    raise ValueError(f"{name} is not JSON")


@pytest.fixture(scope="module")
def popularity_solution(spark, tmp_path_factory):
    """A trained popularity-count solution (in-process CLI) and its interactions."""
    root = tmp_path_factory.mktemp("hostile-solution")
    csv = root / "interactions.csv"
    csv.write_text(HEADER + ROWS)
    solution = root / "solution"
    assert main(["train", *COMMON, "--min-interactions", "1", "--min-users", "0", "--recipe",
                 "popularity-count", "--interactions", str(csv), "--solution", str(solution),
                 "--no-evaluate"]) == 0
    return solution


def test_recommend_answers_hostile_lines_with_errors_in_valid_json(spark, capsys, popularity_solution, tmp_path):
    requests = tmp_path / "requests.jsonl"
    requests.write_bytes(b"\n".join(HOSTILE_LINES) + b"\n")
    out, jsonl = tmp_path / "recs", tmp_path / "jsonl"
    code, stdout, _ = cli(capsys, "recommend", *COMMON, "--solution", popularity_solution, "--input", requests,
                          "--output", out, "--jsonl", jsonl, "--num-results", "2")
    assert code == 0
    assert json.loads(stdout.strip().splitlines()[-1])["errors"] == 11
    assert sorted(p.name for p in jsonl.iterdir()) == ["requests.jsonl.out"]  # Personalize's name
    lines = (jsonl / "requests.jsonl.out").read_text().splitlines()
    parsed = [json.loads(line, parse_constant=_no_constants) for line in lines]
    assert len(parsed) == len(HOSTILE_LINES)
    assert [p["error"] is None for p in parsed] == [True] + [False] * 11 + [True]
    assert parsed[1]["input"] == '{"userId": "u13"} trailing'


def test_jsonl_never_replaces_the_delta_output_or_the_solution(spark, capsys, popularity_solution, tmp_path):
    import shutil

    solution = tmp_path / "solution"
    shutil.copytree(popularity_solution, solution)
    table = tmp_path / "recs"
    assert cli(capsys, "recommend", *COMMON, "--solution", solution, "--output", table)[0] == 0
    rows = sorted(map(tuple, spark.read.format("delta").load(str(table)).collect()))
    before = snapshot(tmp_path)
    for jsonl in (table, f"{table}/", solution):
        code, _, err = cli(capsys, "recommend", *COMMON, "--solution", solution, "--output", table,
                           "--jsonl", jsonl)
        # Each of these overlaps the Delta output or the solution, so the overlap rule refuses it
        # before the sink ever looks at what is there.
        assert code == 2 and "--jsonl" in one_line(err)
        assert "may not equal, contain or sit inside an input, a solution or another output" in err
    assert sorted(map(tuple, spark.read.format("delta").load(str(table)).collect())) == rows
    after = snapshot(tmp_path)  # the re-run commits to the table again, so files may be added
    assert all(after.get(k) == v for k, v in before.items() if "_delta_log" not in k)
    assert snapshot(solution) == {k: v for k, v in before.items() if k.startswith(str(solution))}


# --- 4. CSV as RFC 4180 ---------------------------------------------------------------------------


def test_csv_quotes_escapes_and_multi_line_fields_follow_rfc_4180(spark, capsys, tmp_path):
    from batchrec.config import load_settings
    from batchrec.datasets.validation import load_datasets

    text = (HEADER + 'u1,i1,1700000000\n"a""b",i2,1700000001\n"u\nx",i3,1700000002\n'
            '"c,d","say ""hi""\r\n",1700000003\nu5,i5\n"u6,i6,1700000005\nu7,i7,1700000006\n')
    path = tmp_path / "rfc.csv"
    path.write_bytes(text.encode())
    settings = load_settings(environ={}, overrides={"validation": {
        "min_interactions": 1, "min_users_with_two_interactions": 0, "max_reject_fraction": 1.0}})
    result = load_datasets(spark, settings, str(path), run_date=None, enforce=False)
    got = sorted((r.USER_ID, r.ITEM_ID, r.TIMESTAMP) for r in result.interactions.collect())
    assert got == sorted([('a"b', "i2", 1700000001), ("c,d", 'say "hi"\r\n', 1700000003),
                          ("u1", "i1", 1700000000), ("u\nx", "i3", 1700000002)])
    summary = result.summary["datasets"]["interactions"]
    # "u5,i5" has too few fields; the unclosed quote swallows the rest of the file as one bad row:
    # neither half of anything is accepted.
    assert (summary["rows_read"], summary["rows_rejected"]) == (6, 2)
    assert path.read_bytes() == text.encode()


@pytest.mark.parametrize("bad_line, line_no", [('"u2"x,i2,1700000001', 3), ('"u\\"2",i2,1700000001', 3)])
def test_text_after_a_closing_quote_stops_the_read_naming_file_and_line(spark, capsys, tmp_path, bad_line, line_no):
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + "u1,i1,1700000000\n" + bad_line + "\nu3,i3,1700000002\n")
    before = snapshot(tmp_path)
    code, _, err = cli(capsys, "validate", *COMMON, *LOW_LIMITS, "--interactions", path)
    assert code == 1
    line = one_line(err)
    assert line.startswith("batchrec: error: file:") and f"bad.csv: line {line_no}: not valid CSV (RFC 4180)" in line
    assert snapshot(tmp_path) == before


# --- 5. One line per failure, the right exit code --------------------------------------------------


def test_a_binary_file_given_as_csv_is_not_text(spark, capsys, tmp_path):
    path = tmp_path / "x.csv"
    rng = random.Random(3)
    path.write_bytes(bytes(rng.randrange(256) for _ in range(4000)))
    code, _, err = cli(capsys, "validate", *COMMON, *LOW_LIMITS, "--interactions", path)
    assert code == 1
    assert "x.csv: not text (" in one_line(err) and "expected UTF-8 CSV text with a header row" in err


def test_a_format_that_does_not_match_the_file_is_one_line(spark, capsys, data, tmp_path):
    csv, _ = data
    parquet = tmp_path / "pq"
    spark.createDataFrame([("u1", "i1", 1)], "USER_ID string, ITEM_ID string, TIMESTAMP long").write.parquet(str(parquet))
    cases = [(csv, "parquet", "x.csv: not a Parquet file (it starts with text: 'USER_ID,ITEM_ID,TIMESTAMP')"),
             (parquet, "csv", ".parquet: is a Parquet file, not csv; pass --format parquet"),
             (parquet, "json", ".parquet: is a Parquet file, not json"),
             (csv, "delta", "x.csv: not a Delta table (no _delta_log folder)")]
    for path, fmt, expected in cases:
        code, _, err = cli(capsys, "validate", *COMMON, *LOW_LIMITS, "--interactions", path, "--format", fmt)
        assert code == 1, err
        assert expected in one_line(err), err


def test_s3a_without_hadoop_aws_names_the_package(spark, capsys):
    code, _, err = cli(capsys, "validate", *COMMON, "--interactions", "s3a://bucket/interactions.csv")
    assert code == 2
    line = one_line(err)
    version = spark.sparkContext._jvm.org.apache.hadoop.util.VersionInfo.getVersion()
    assert line.startswith("batchrec: configuration error: --interactions s3a://bucket/interactions.csv: "
                           "no Hadoop file system for 's3a://'")
    assert f"org.apache.hadoop:hadoop-aws:{version} (matching Hadoop {version} of this Spark)" in line


@pytest.mark.parametrize("toml, key", [
    ('[validation]\ncsv_delimiter = ""\n', "'validation.csv_delimiter' = ''"),
    ("[spark]\nshuffle_partitions = -3\n", "'spark.shuffle_partitions' = -3; expected a number >= 1"),
    ('[spark]\ndriver_memory = "lots"\n', "'spark.driver_memory' = 'lots'; expected a JVM memory size"),
    ('[spark]\nmaster = "local[0]"\n', "'spark.master' = 'local[0]'"),
    ("[als]\nalpha = nan\n", "parameter als.alpha=nan; expected a finite float >= 0.0"),
    ("[recommend]\nnum_results = 0\n", "'recommend.num_results' = 0; expected a number >= 1 and <= 500"),
    ('[evaluate]\nhpo_metric = "ndcg"\n', "'evaluate.hpo_metric' = 'ndcg'; expected <metric>@<K>"),
])
def test_impossible_configuration_values_are_usage_errors_found_before_spark(monkeypatch, capsys, tmp_path,
                                                                              toml, key):
    import batchrec.spark

    def no_spark(*args, **kwargs):
        raise AssertionError("Spark must not start for a configuration error")

    monkeypatch.setattr(batchrec.spark, "get_spark", no_spark)
    config = tmp_path / "bad.toml"
    config.write_text(toml)
    code, _, err = cli(capsys, "validate", "--interactions", "x.csv", "--config", config)
    assert code == 2
    assert one_line(err).startswith(f"batchrec: configuration error: {config}: {key}")
    monkeypatch.setenv("BATCHREC_SPARK__SHUFFLE_PARTITIONS", "-3")
    code, _, err = cli(capsys, "validate", "--interactions", "x.csv")
    assert code == 2 and "environment: 'spark.shuffle_partitions' = -3" in one_line(err)


@pytest.mark.parametrize("args", [
    ["export-dynamodb", "--input", "nowhere", "--table", "recs"],
    ["recommend", "--solution", "s", "--output", "o", "--dynamodb-table", "recs"],
])
def test_impossible_dynamodb_settings_are_found_before_spark(monkeypatch, capsys, tmp_path, args):
    """A batch job with --dynamodb-table would otherwise commit its Delta output first."""
    import batchrec.spark

    def no_spark(*args, **kwargs):
        raise AssertionError("Spark must not start for a configuration error")

    monkeypatch.setattr(batchrec.spark, "get_spark", no_spark)
    config = tmp_path / "bad.toml"
    config.write_text("[dynamodb]\nwrite_rate = -1\nbackoff_base_seconds = 9\n")
    code, _, err = cli(capsys, *args, "--config", config)
    assert code == 2
    line = one_line(err)
    assert line.startswith("batchrec: configuration error: [dynamodb] write_rate = -1.0: expected >= 0"), line
    assert "backoff_base_seconds and backoff_max_seconds: expected 0 < base <= max" in line


def test_a_configuration_file_that_is_not_utf8_or_not_a_file(monkeypatch, capsys, tmp_path):
    config = tmp_path / "latin1.toml"
    config.write_bytes('[spark]\napp_name = "caf\xe9"\n'.encode("latin-1"))
    code, _, err = cli(capsys, "validate", "--interactions", "x.csv", "--config", config)
    assert code == 2
    assert one_line(err) == (f"batchrec: configuration error: {config}: not UTF-8 text (byte 0xe9 at offset "
                             "23); expected a TOML file saved as UTF-8")
    code, _, err = cli(capsys, "validate", "--interactions", "x.csv", "--config", tmp_path)
    assert code == 2 and "is a folder; expected a TOML file" in one_line(err)


@pytest.mark.parametrize("args, expected", [
    (["validate", "--bogus"], "No such option '--bogus'"),
    (["validate"], "Missing option '--interactions'"),
    (["nosuchcommand"], "No such command 'nosuchcommand'"),
    (["recommend", "--solution", "s", "--output", "o", "--num-results", "999"], "999 is not in the range"),
    (["validate", "--interactions", "x", "--log-level", "LOUD"], "'LOUD' is not one of"),
])
def test_click_usage_errors_are_one_line(capsys, args, expected):
    code, _, err = cli(capsys, *args)
    assert code == 2
    line = one_line(err)
    assert line.startswith("batchrec: usage error: ") and expected in line and "--help" in line


def test_warn_and_warning_are_both_log_levels(spark, capsys, data, tmp_path):
    from batchrec.spark import spark_log_level

    csv, _ = data
    config = tmp_path / "levels.toml"
    config.write_text('[spark]\nlog_level = "warning"\n')
    for level in ("WARN", "warning"):
        code, _, err = cli(capsys, "validate", "--master", "local[2]", "--run-date", "2024-01-31",
                           "--log-level", level, *LOW_LIMITS, "--interactions", csv, "--config", config)
        assert (code, err) == (0, "")
    assert [spark_log_level(x) for x in ("WARNING", "warn", "Info")] == ["WARN", "WARN", "INFO"]
    spark.sparkContext.setLogLevel("WARN")


# --- 6. Corrupted Parquet pages in an artifact -----------------------------------------------------


def corrupt_pages(path: Path, seed: int = 7, count: int = 0) -> None:
    """Overwrite the column data of a Parquet file with garbage, keeping its size and its footer.

    ``count`` = 0 overwrites every byte between the magic number and the footer; otherwise only
    ``count`` bytes in the middle of that region.
    """
    data = bytearray(path.read_bytes())
    footer_length = int.from_bytes(data[-8:-4], "little")
    start, end = 4, len(data) - 8 - footer_length
    rng = random.Random(seed)
    positions = range(start, end) if count == 0 else [(start + end) // 2 + i for i in range(count)]
    for i in positions:
        data[i] = (data[i] + 1 + rng.randrange(255)) % 256
    size = path.stat().st_size
    path.write_bytes(bytes(data))
    assert path.stat().st_size == size


@pytest.fixture()
def factor_version(spark, tmp_path):
    rng = random.Random(1)
    factors = [(i, [rng.uniform(-1, 1) for _ in range(8)]) for i in range(200)]
    model = TrainedModel("user-personalization", {"rank": 8}, {
        "item_factors": spark.createDataFrame(factors, "item_idx int, features array<float>"),
        "item_map": spark.createDataFrame([(f"i{i}", i) for i in range(200)], "ITEM_ID string, item_idx int"),
    }, {})
    saved = registry.save_version(spark, str(tmp_path / "solution"), model, {})
    folder = Path(saved.path) / registry.ARTIFACTS_DIR / "item_factors"
    return saved, sorted(folder.glob("part-*.parquet"))[0]


@pytest.mark.parametrize("count", [0, 3])
def test_corrupted_pages_in_a_factor_file_name_the_file(spark, factor_version, count):
    saved, part = factor_version
    assert len(registry.read_artifact(spark, saved, "item_factors").collect()) > 0
    corrupt_pages(part, count=count)
    with pytest.raises(JobError) as info:
        registry.read_artifact(spark, saved, "item_factors")
    message = str(info.value)
    assert message.startswith("corrupt artifact file ") and part.name in message
    assert f"(solution version {saved.version})" in message and "\n" not in message
    registry.read_artifact(spark, saved, "item_map")  # the other artifact is fine


def test_corrupted_pages_in_a_parquet_dataset_name_the_file(spark, capsys, tmp_path):
    folder = tmp_path / "interactions"
    rows = [(f"u{u}", f"i{u % 7}", 1700000000 + u) for u in range(300)]
    (spark.createDataFrame(rows, "USER_ID string, ITEM_ID string, TIMESTAMP long").coalesce(1)
     .write.parquet(str(folder)))
    part = sorted(folder.glob("part-*.parquet"))[0]
    corrupt_pages(part)
    before = snapshot(tmp_path)
    code, _, err = cli(capsys, "validate", *COMMON, *LOW_LIMITS, "--interactions", folder)
    assert code == 1
    line = one_line(err)
    assert line.startswith("batchrec: error: ") and part.name in line
    assert snapshot(tmp_path) == before


# --- Subprocess runs: what the console shows when Spark itself fails ------------------------------


def run_cli_process(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "lib")}
    return subprocess.run([sys.executable, "-m", "batchrec.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO, env=env)


def assert_one_line_failure(result: subprocess.CompletedProcess, code: int, expected: str) -> None:
    assert result.returncode == code, result.stderr[-3000:]
    assert not any(marker in result.stderr for marker in TRACE_MARKERS), result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("batchrec: ") and expected in lines[-1], result.stderr[-3000:]
    # Besides the failure: at most the JVM's own start-up notice, never Spark's task-failure lines.
    others = [line for line in lines[:-1] if "Using incubator modules" not in line]
    assert others == [], others


def test_a_csv_failure_inside_spark_prints_one_line_and_no_trace(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + ROWS + '"u2"x,i2,1700000001\n')
    result = run_cli_process("validate", "--master", "local[1]", "--run-date", "2024-01-31",
                             "--log-level", "WARNING", *LOW_LIMITS, "--interactions", path)
    assert_one_line_failure(result, 1, f"bad.csv: line {len(ROWS.splitlines()) + 2}: not valid CSV (RFC 4180)")


def test_a_corrupted_artifact_fails_the_batch_job_in_one_line(spark, popularity_solution, tmp_path):
    import shutil

    solution = tmp_path / "solution"
    shutil.copytree(popularity_solution, solution)
    part = next((solution / "versions").glob("*/artifacts/popular_items/part-*.parquet"))
    corrupt_pages(part)
    result = run_cli_process("recommend", "--master", "local[1]", "--run-date", "2024-01-31",
                             "--log-level", "WARNING", "--solution", solution, "--output", tmp_path / "out")
    assert_one_line_failure(result, 1, "corrupt artifact file ")
    assert part.name in result.stderr and not (tmp_path / "out").exists()
