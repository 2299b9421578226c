"""Small file operations on any URI the session can read (local paths, file:, hdfs:, s3a:, ...).

Everything goes through Hadoop's FileSystem API in the session's JVM, so a path means what it
means to Spark's own readers and writers (a bare path is on the default file system).
"""

from __future__ import annotations

import uuid

from batchrec.errors import BatchrecError, JobError, UsageError

CHECKSUM_FS = "org.apache.hadoop.fs.ChecksumFileSystem"


def join(*parts: str) -> str:
    """Join URI parts with single slashes."""
    return "/".join([parts[0].rstrip("/")] + [p.strip("/") for p in parts[1:]])


def first_line(exc: Exception) -> str:
    """The message of a (Java) exception without its stack trace."""
    java = getattr(exc, "java_exception", None)
    text = str(java.toString()) if java is not None else str(exc)
    return (text.strip().splitlines() or [type(exc).__name__])[0]


def hadoop_path(spark, uri: str):
    """``(FileSystem, Path)`` of ``uri`` in the session's Hadoop configuration.

    Raises:
        ConfigError: no file system for the URI's scheme (e.g. s3a:// without hadoop-aws); the
            message names the package to add.
        UsageError: ``uri`` is not a valid path (empty, or a malformed URI).
    """
    jvm = spark.sparkContext._jvm
    try:
        path = jvm.org.apache.hadoop.fs.Path(uri)
    except Exception as exc:  # IllegalArgumentException: empty string, bad URI syntax
        raise UsageError(f"{uri!r} is not a valid path or URI ({first_line(exc)})") from exc
    try:
        return path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), path
    except Exception as exc:  # UnsupportedFileSystemException and friends
        from batchrec.failures import translate

        known = translate(exc, uri, spark)
        if known is not None:
            raise known from exc
        raise JobError(f"{uri}: cannot open its file system ({first_line(exc)})") from exc


def status(spark, uri: str) -> tuple[bool, bool]:
    """``(exists, is_directory)`` of ``uri``."""
    fs, path = hadoop_path(spark, uri)
    try:
        stat = fs.getFileStatus(path)
    except Exception as exc:  # FileNotFoundException: it does not exist
        if "FileNotFoundException" in first_line(exc):
            return False, False
        raise
    return True, bool(stat.isDirectory())


def list_names(spark, uri: str) -> list[tuple[str, bool]]:
    """``(name, is_directory)`` of every entry directly in the folder ``uri``, sorted by name."""
    fs, path = hadoop_path(spark, uri)
    return sorted((str(s.getPath().getName()), bool(s.isDirectory())) for s in fs.listStatus(path))


def exists(spark, uri: str) -> bool:
    """True when ``uri`` is an existing file or directory."""
    fs, path = hadoop_path(spark, uri)
    return bool(fs.exists(path))


def list_dirs(spark, uri: str) -> list[str]:
    """Names of the sub-directories of ``uri``."""
    fs, path = hadoop_path(spark, uri)
    return sorted(s.getPath().getName() for s in fs.listStatus(path) if s.isDirectory())


def list_files(spark, uri: str) -> dict[str, int]:
    """``{name: size in bytes}`` of the files directly in ``uri``."""
    fs, path = hadoop_path(spark, uri)
    return {s.getPath().getName(): int(s.getLen()) for s in fs.listStatus(path) if s.isFile()}


def write_text(spark, uri: str, text: str) -> None:
    """Create (or overwrite) the file ``uri`` with ``text`` in UTF-8."""
    fs, path = hadoop_path(spark, uri)
    checksummed = spark.sparkContext._jvm.java.lang.Class.forName(CHECKSUM_FS)
    if checksummed.isInstance(fs) and str(fs.getScheme()) == "file":
        # Hadoop's local file system would add a hidden .<name>.crc file beside every report.
        fs = fs.getRawFileSystem()
    stream = fs.create(path, True)
    try:
        stream.write(bytearray(text.encode("utf-8")))
    finally:
        stream.close()


def write_text_atomic(spark, uri: str, text: str) -> None:
    """Write ``text`` to a temporary sibling of ``uri``, then move it into place.

    A failure leaves the previous file (if any) and no temporary file behind.

    Raises:
        JobError: the file could not be written or moved into place (the message names it).
    """
    if status(spark, uri)[1]:
        raise UsageError(f"{uri} is a folder; expected the path of a file (a folder is never "
                         "replaced by a file)")
    temporary = f"{uri.rstrip('/')}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        write_text(spark, temporary, text)
        replace(spark, temporary, uri)
    except Exception as exc:
        try:
            delete(spark, temporary)
        except Exception:  # the original failure is the one to report
            pass
        if isinstance(exc, BatchrecError):
            raise
        raise JobError(f"could not write {uri}: {first_line(exc)}") from exc


def read_text(spark, uri: str) -> str:
    """The UTF-8 content of the file ``uri``.

    Raises:
        JobError: the file does not exist or cannot be read.
    """
    fs, path = hadoop_path(spark, uri)
    if not fs.exists(path):
        raise JobError(f"file not found: {uri}")
    try:
        stream = fs.open(path)
        try:
            data = spark.sparkContext._jvm.org.apache.commons.io.IOUtils.toByteArray(stream)
        finally:
            stream.close()
    except Exception as exc:  # Py4JJavaError: an I/O or checksum error in the JVM
        raise JobError(f"could not read {uri}: {first_line(exc)}") from exc
    return bytes(data).decode("utf-8")


def delete(spark, uri: str) -> None:
    """Remove ``uri`` recursively (no error when it does not exist)."""
    fs, path = hadoop_path(spark, uri)
    fs.delete(path, True)


def replace(spark, temporary: str, final: str) -> None:
    """Move the finished output ``temporary`` to ``final``, replacing what was there.

    The previous ``final`` is moved aside first and deleted only once the new one is in place, so a
    failure leaves either the old or the new output, never a half-written one. (On object stores
    where rename is a copy, the window is the copy's duration.)

    Raises:
        JobError: a rename failed; the message says where the previous output is.
    """
    fs, target = hadoop_path(spark, final)
    aside = f"{final.rstrip('/')}.old-{uuid.uuid4().hex[:8]}"
    moved = False
    if fs.exists(target):
        if not fs.rename(target, hadoop_path(spark, aside)[1]):
            raise JobError(f"could not move the previous output {final} aside to {aside}")
        moved = True
    try:
        renamed = fs.rename(hadoop_path(spark, temporary)[1], target)
    except Exception as exc:  # Py4JJavaError, e.g. FileNotFoundException on some file systems
        renamed, reason = False, f": {first_line(exc)}"
    else:
        reason = ""
    if not renamed:
        if moved:
            fs.rename(hadoop_path(spark, aside)[1], target)
        raise JobError(f"could not rename {temporary} to {final}{reason}")
    if moved:
        fs.delete(hadoop_path(spark, aside)[1], True)
