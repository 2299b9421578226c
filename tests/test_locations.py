"""The location guard: one canonical URI per place, and no output over an input, output or solution."""

from __future__ import annotations

import os

import pytest

from batchrec import locations as L
from batchrec.errors import ConfigError, UsageError
from batchrec.locations import Location, check_locations, qualify


def jvm_relative(spark, path) -> str:
    """``path`` relative to the JVM's working directory (what Spark resolves relative paths against)."""
    return os.path.relpath(path, spark.sparkContext._jvm.System.getProperty("user.dir"))


def test_spellings_of_one_folder_give_one_qualified_uri(spark, tmp_path):
    folder = tmp_path / "solution"
    folder.mkdir()
    expected = f"file:{folder}"
    relative = jvm_relative(spark, folder)
    spellings = [str(folder), f"{folder}/", f"{folder}//", f"file://{folder}", f"file:{folder}/",
                 relative, f"./{relative}/", f"{tmp_path}/x/../solution"]
    assert {qualify(spark, s) for s in spellings} == {expected}


def test_a_symbolic_link_is_the_place_it_points_to(spark, tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    os.symlink(real, link)
    assert qualify(spark, str(link)) == qualify(spark, str(real)) == f"file:{real}"


@pytest.mark.parametrize("out, relation", [
    ("data/x.csv", "is the same location as"),
    ("data/x.csv/", "is the same location as"),
    ("data/x.csv/report.json", "is inside"),
    ("data", "contains"),
])
def test_an_output_overlapping_an_input_is_refused_naming_both_options(spark, tmp_path, out, relation):
    out = os.path.join(jvm_relative(spark, tmp_path), out)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.csv").write_text("USER_ID\nu1\n")
    with pytest.raises(UsageError) as info:
        check_locations(spark, [Location("--interactions", f"file://{tmp_path}/data/x.csv")],
                        [Location("--report", out, L.KIND_ANY)])
    message = str(info.value)
    assert message.startswith(f"--report {out}")
    assert f"{relation} the input --interactions" in message and "\n" not in message
    assert (tmp_path / "data" / "x.csv").read_text() == "USER_ID\nu1\n"


def test_outputs_may_not_overlap_each_other_or_a_solution(spark, tmp_path):
    out = str(tmp_path / "out")
    with pytest.raises(UsageError, match=r"^--jsonl .* is the same location as the output --output"):
        check_locations(spark, [], [Location("--output", out, L.KIND_DELTA),
                                    Location("--jsonl", out + "/", L.KIND_FOLDER)])
    with pytest.raises(UsageError, match=r"^--output .* is inside the solution --solution "):
        check_locations(spark, [Location("--solution", str(tmp_path / "sol"), L.KIND_SOLUTION)],
                        [Location("--output", str(tmp_path / "sol" / "recs"), L.KIND_DELTA)])


def test_separate_locations_pass_and_come_back_qualified(spark, tmp_path):
    (tmp_path / "in.csv").write_text("x\n")
    got = check_locations(
        spark, [Location("--interactions", str(tmp_path / "in.csv")),
                Location("--schema", str(tmp_path / "a.json")), Location("--schema", str(tmp_path / "b.json"))],
        [Location("--report", str(tmp_path / "report.json"), L.KIND_FILE),
         Location("--rejects", str(tmp_path / "rejects"), L.KIND_DELTA)])
    assert got == {"--interactions": f"file:{tmp_path}/in.csv", "--schema": f"file:{tmp_path}/a.json",
                   "--schema#2": f"file:{tmp_path}/b.json", "--report": f"file:{tmp_path}/report.json",
                   "--rejects": f"file:{tmp_path}/rejects"}


def test_a_glob_input_protects_the_folder_it_lists(spark, tmp_path):
    (tmp_path / "data").mkdir()
    with pytest.raises(UsageError, match="is inside the folder read by the input --interactions"):
        check_locations(spark, [Location("--interactions", str(tmp_path / "data" / "*.csv"))],
                        [Location("--rejects", str(tmp_path / "data" / "rejects"), L.KIND_DELTA)])
    with pytest.raises(UsageError, match="cannot be a glob pattern"):
        check_locations(spark, [], [Location("--output", str(tmp_path / "o*"), L.KIND_DELTA)])


def _spark_text_output(folder):
    folder.mkdir(parents=True)
    (folder / "part-00000-abc-c000.txt").write_text('{"a": 1}\n')
    (folder / ".part-00000-abc-c000.txt.crc").write_bytes(b"crc")
    (folder / "_SUCCESS").write_text("")


def test_existing_outputs_must_be_of_their_kind(spark, tmp_path):
    report_dir = tmp_path / "report"
    report_dir.mkdir()
    (report_dir / "keep.txt").write_text("keep")
    a_file = tmp_path / "a.csv"
    a_file.write_text("precious")
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("mine")
    delta_like = tmp_path / "table"
    (delta_like / "_delta_log").mkdir(parents=True)
    (delta_like / "part-0.snappy.parquet").write_bytes(b"PAR1")
    jsonl = tmp_path / "jsonl"
    _spark_text_output(jsonl)
    refused = [
        (Location("--report", str(report_dir), L.KIND_FILE), "is a folder; expected the path of a file"),
        (Location("--output", str(a_file), L.KIND_DELTA), "is a file; expected a folder (a Delta table)"),
        (Location("--output", str(plain), L.KIND_DELTA), "is not a Delta table (no _delta_log/, and it holds notes.txt)"),
        (Location("--jsonl", str(plain), L.KIND_FOLDER), "it holds notes.txt"),
        (Location("--jsonl", str(delta_like), L.KIND_FOLDER), "it holds _delta_log/ (a folder)"),
        (Location("--solution", str(plain), L.KIND_SOLUTION), "is not a solution folder (versions/)"),
        (Location("--output", str(jsonl), L.KIND_DATASETS), "it holds part-00000-abc-c000.txt"),
        (Location("--report", str(a_file / "r.json"), L.KIND_FILE), "a.csv is a file, not a folder"),
    ]
    for location, expected in refused:
        with pytest.raises(UsageError) as info:
            check_locations(spark, [], [location])
        assert expected in str(info.value), (location, str(info.value))
        assert str(info.value).startswith(location.option)
    # Of their kind, or empty, or new: accepted.
    (tmp_path / "empty").mkdir()
    (tmp_path / "sol" / "versions").mkdir(parents=True)
    accepted = [Location("--output", str(delta_like), L.KIND_DELTA),
                Location("--jsonl", str(jsonl), L.KIND_FOLDER),
                Location("--report", str(a_file), L.KIND_FILE),
                Location("--rejects", str(tmp_path / "empty"), L.KIND_DELTA),
                Location("--solution", str(tmp_path / "sol"), L.KIND_SOLUTION),
                Location("--new", str(tmp_path / "new" / "deeper"), L.KIND_DELTA)]
    for location in accepted:
        check_locations(spark, [], [location])
    assert a_file.read_text() == "precious" and (plain / "notes.txt").read_text() == "mine"


def test_a_previous_generated_dataset_is_recognised(spark, tmp_path):
    out = tmp_path / "gen"
    for kind in ("interactions", "items"):
        (out / kind).mkdir(parents=True)
        (out / kind / "part-00000-x-c000.csv").write_text("USER_ID\n")
        (out / kind / "_SUCCESS").write_text("")
    (out / "schemas").mkdir()
    (out / "schemas" / "items.json").write_text("{}")
    check_locations(spark, [], [Location("--output", str(out), L.KIND_DATASETS)])
    (out / "users").mkdir()
    (out / "users" / "precious.csv").write_text("mine")
    with pytest.raises(UsageError, match="it holds users/precious.csv"):
        check_locations(spark, [], [Location("--output", str(out), L.KIND_DATASETS)])


def test_configuration_files_count_as_inputs(spark, tmp_path):
    config = tmp_path / "job.toml"
    config.write_text("[recommend]\n")
    with L.ambient_locations([Location("--config", L.local_uri(str(config)), L.KIND_FILE)]):
        with pytest.raises(UsageError, match="^--report .* is the same location as the input --config"):
            check_locations(spark, [], [Location("--report", str(config), L.KIND_FILE)])
    check_locations(spark, [], [Location("--report", str(config), L.KIND_FILE)])  # outside the block


def test_empty_path_and_missing_file_system_name_the_option(spark):
    with pytest.raises(UsageError, match="^--report: empty path"):
        check_locations(spark, [], [Location("--report", " ", L.KIND_FILE)])
    with pytest.raises(ConfigError) as info:
        check_locations(spark, [Location("--interactions", "s3a://bucket/x.csv")], [])
    message = str(info.value)
    assert message.startswith("--interactions s3a://bucket/x.csv: no Hadoop file system for 's3a://'")
    assert "org.apache.hadoop:hadoop-aws:3." in message and "matching Hadoop 3." in message


def test_unknown_kind_is_a_programming_error(spark, tmp_path):
    with pytest.raises(ValueError):
        check_locations(spark, [], [Location("--output", str(tmp_path / "o"), "table")])
