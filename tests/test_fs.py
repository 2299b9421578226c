"""File helpers over Hadoop's FileSystem: text round trip, listing, atomic replacement."""

from __future__ import annotations

import pytest

from batchrec import fs
from batchrec.errors import JobError


def test_text_helpers_round_trip_through_hadoop_filesystem(spark, tmp_path):
    uri = f"file://{tmp_path}/deep/er/note.txt"
    fs.write_text(spark, uri, "héllo\n")
    assert fs.read_text(spark, uri) == "héllo\n"
    assert fs.list_dirs(spark, f"file://{tmp_path}/deep") == ["er"]
    assert fs.list_files(spark, f"file://{tmp_path}/deep/er") == {"note.txt": len("héllo\n".encode())}
    with pytest.raises(JobError, match="file not found: .*absent.txt"):
        fs.read_text(spark, f"file://{tmp_path}/absent.txt")


@pytest.mark.parametrize("scheme", ["", "file://"])
def test_replace_swaps_in_the_new_folder_and_leaves_nothing_behind(spark, tmp_path, scheme):
    final, new = tmp_path / "out", tmp_path / "out.tmp"
    final.mkdir()
    (final / "old.txt").write_text("old")
    new.mkdir()
    (new / "new.txt").write_text("new")
    fs.replace(spark, f"{scheme}{new}", f"{scheme}{final}")
    assert sorted(p.name for p in final.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_write_text_atomic_replaces_a_file(spark, tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")
    fs.write_text_atomic(spark, str(target), "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["report.json"]


def test_replace_of_a_missing_temporary_output_fails_and_keeps_the_old_one(spark, tmp_path):
    final = tmp_path / "out"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with pytest.raises(JobError, match="could not rename"):
        fs.replace(spark, str(tmp_path / "missing"), str(final))
    assert (final / "old.txt").read_text() == "old"
