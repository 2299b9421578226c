"""batchrec.zipimports: zip archives are read again only when they change, in-process and in Spark's
reused Python workers (Python 3.10 and 3.11; later versions have no eager re-read to fix)."""

from __future__ import annotations

import sys
import zipfile
import zipimport

import pytest

import batchrec.zipimports  # importing the package installs the fix in this process

EAGER = sys.version_info[:2] in batchrec.zipimports._EAGER_VERSIONS
needs_eager = pytest.mark.skipif(not EAGER, reason="this Python reads zip archives lazily already")


def _write_zip(path, files: dict[str, str]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)


@pytest.fixture
def directory_reads(monkeypatch):
    """Counts reads of a zip archive's directory (the work the fix saves)."""
    reads = []
    original = zipimport._read_directory

    def counting(path):
        reads.append(path)
        return original(path)

    monkeypatch.setattr(zipimport, "_read_directory", counting)
    return reads


@needs_eager
def test_an_unchanged_archive_is_not_read_again_and_a_changed_one_is(tmp_path, directory_reads):
    archive = tmp_path / "code.zip"
    _write_zip(archive, {"one.py": "VALUE = 1\n"})
    importers = [zipimport.zipimporter(str(archive)), zipimport.zipimporter(str(archive / "pkg"))]
    before = len(directory_reads)
    for _ in range(3):
        for importer in importers:
            importer.invalidate_caches()
    # the first invalidation reads the archive once for both importers, later ones not at all
    assert len(directory_reads) - before <= 1

    _write_zip(archive, {"one.py": "VALUE = 1\n", "two.py": "VALUE = 2\n"})  # another size
    before = len(directory_reads)
    importers[0].invalidate_caches()
    assert len(directory_reads) - before == 1
    assert "two.py" in importers[0]._files
    importers[1].invalidate_caches()  # same archive, already read after the change
    assert len(directory_reads) - before == 1
    assert "two.py" in importers[1]._files


def test_install_is_idempotent_and_reports_whether_it_applies():
    assert batchrec.zipimports.install() is EAGER
    assert batchrec.zipimports.install() is EAGER
    patched = getattr(zipimport.zipimporter.invalidate_caches, "skips_unchanged_archives", False)
    assert patched is EAGER
    if EAGER:  # installing twice does not wrap the wrapper
        original = zipimport.zipimporter.invalidate_caches.original
        assert not getattr(original, "skips_unchanged_archives", False)


@needs_eager
def test_reused_spark_workers_running_batchrec_code_stop_rereading_pyspark_zip(spark):
    """Spark's worker invalidates import caches before every task; with batchrec imported, the
    zip archives on the workers' path are not read again. With the original method put back in
    the same workers, every task reads them again: the count below sees reads when there are any."""
    rdd = spark.sparkContext.parallelize(range(2), 2).cache()
    rdd.count()

    def reads_so_far(restore_original, stop_counting=False):
        def task(_):
            import os
            import zipimport

            from batchrec import zipimports as fix

            if not hasattr(zipimport, "batchrec_test_reads"):
                original = zipimport._read_directory

                def counting(path):
                    zipimport.batchrec_test_reads += 1
                    return original(path)

                zipimport.batchrec_test_reads = 0
                zipimport.batchrec_test_original = original
                zipimport._read_directory = counting
            method = zipimport.zipimporter.invalidate_caches
            if restore_original and getattr(method, "skips_unchanged_archives", False):
                zipimport.zipimporter.invalidate_caches = method.original
            elif not restore_original:
                fix.install()
            reads = zipimport.batchrec_test_reads
            if stop_counting:
                zipimport._read_directory = zipimport.batchrec_test_original
                del zipimport.batchrec_test_reads, zipimport.batchrec_test_original
            return os.getpid(), reads

        return dict(rdd.map(task).collect())

    try:
        reads_so_far(False)
        first = reads_so_far(False)
        later = [reads_so_far(False) for _ in range(3)][-1]
        reused = set(first) & set(later)
        assert reused, "the Python workers were not reused between jobs"
        assert all(later[pid] == first[pid] for pid in reused), (first, later)

        reads_so_far(True)
        unfixed_first = reads_so_far(True)
        unfixed_later = [reads_so_far(True) for _ in range(3)][-1]
        reused = set(unfixed_first) & set(unfixed_later)
        assert reused
        assert all(unfixed_later[pid] > unfixed_first[pid] for pid in reused), (unfixed_first, unfixed_later)
    finally:
        reads_so_far(False, stop_counting=True)  # the session's workers keep the fix, not the count
        rdd.unpersist()
