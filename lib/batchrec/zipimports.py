"""Keep Spark's Python workers from re-reading zip archives at the start of every task.

Spark's Python worker calls ``importlib.invalidate_caches()`` before each task (so that files added
with ``addPyFile`` become importable). On Python 3.10 and 3.11 that re-reads the central directory
of every zip archive on the import path, once for each package imported from it
(python/cpython#103200, made lazy in Python 3.12). Spark puts ``pyspark.zip`` (about 1,200 files)
and py4j's zip on the workers' path, and a worker that has imported a few of pyspark's
subpackages reads them 8 times or more per task: 0.2 to 0.3 s of every task on a 2-core machine
(``bench/bench_spark_floor.py``), longer than most of batchrec's tasks take to do their work.

:func:`install` gives Python 3.10 and 3.11 the effect of 3.12's fix for archives that have not
changed: an archive is read again only when its size or modification time differs from the last
read, so an archive replaced on disk is still seen. Importing :mod:`batchrec` installs it, which
covers every worker that runs batchrec's code (the worker imports the package to run it); the
first task of each new worker still pays the cost once.
"""

from __future__ import annotations

import os
import sys
import zipimport

# The versions whose zipimporter reads the archive again on every invalidation.
_EAGER_VERSIONS = ((3, 10), (3, 11))


def install() -> bool:
    """Make ``zipimporter.invalidate_caches`` skip unchanged archives; True when it now does.

    Does nothing (False) on Python versions without the eager re-read.
    """
    if sys.version_info[:2] not in _EAGER_VERSIONS:
        return False
    read_again = zipimport.zipimporter.invalidate_caches  # Python's own: always reads the archive
    if getattr(read_again, "skips_unchanged_archives", False):
        return True
    # archive path -> (size, mtime in ns) when it was last read
    stamps: dict[str, tuple[int, int]] = {}

    def invalidate_caches(self) -> None:
        """Read the archive's directory again only if the file changed since the last read."""
        try:
            info = os.stat(self.archive)
            stamp = (info.st_size, info.st_mtime_ns)
        except OSError:
            stamp = None
        cached = zipimport._zip_directory_cache.get(self.archive)
        if stamp is not None and stamps.get(self.archive) == stamp and cached is not None:
            self._files = cached  # the directory read for another importer of the same archive
            return
        read_again(self)
        if stamp is not None:
            stamps[self.archive] = stamp

    invalidate_caches.skips_unchanged_archives = True
    invalidate_caches.original = read_again  # to put back (tests show the difference with it)
    zipimport.zipimporter.invalidate_caches = invalidate_caches
    return True
