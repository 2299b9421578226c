"""Failures raised inside Spark's JVM, told as batchrec errors with a one-line message.

A Spark failure reaches Python as a ``Py4JJavaError`` (or one of PySpark's captured exceptions)
whose text is a Java stack trace hundreds of lines long. :func:`translate` walks the Java cause
chain and recognises the failures a user can act on (a file system without its jars, a file that is
not valid CSV or Parquet, a missing file, no memory left), naming the file and what was expected;
:func:`one_line` gives the best single line for anything else. Nothing here starts a JVM.
"""

from __future__ import annotations

import re
from typing import Any, Optional

from batchrec.errors import BatchrecError, ConfigError, DataError, JobError

# Hadoop file-system connectors by URI scheme: (Maven coordinates, whether the version must be
# Hadoop's own). gs:// is Google's connector, versioned on its own.
CONNECTORS = {
    "s3a": ("org.apache.hadoop:hadoop-aws", True),
    "s3n": ("org.apache.hadoop:hadoop-aws", True),
    "s3": ("org.apache.hadoop:hadoop-aws", True),
    "abfs": ("org.apache.hadoop:hadoop-azure", True),
    "abfss": ("org.apache.hadoop:hadoop-azure", True),
    "wasb": ("org.apache.hadoop:hadoop-azure", True),
    "wasbs": ("org.apache.hadoop:hadoop-azure", True),
    "gs": ("com.google.cloud.bigdataoss:gcs-connector", False),
}
_NO_FILESYSTEM = re.compile(r'No FileSystem for scheme "?([A-Za-z0-9+.\-]+)"?')
_CLASS_NOT_FOUND = re.compile(r"Class (org\.apache\.hadoop\.fs\.\S+|\S+FileSystem) not found")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_FILESYSTEM_CLASSES = {"S3AFileSystem": "s3a", "AzureBlobFileSystem": "abfs",
                       "SecureAzureBlobFileSystem": "abfss", "NativeAzureFileSystem": "wasb",
                       "GoogleHadoopFileSystem": "gs"}
_READ_FILE = re.compile(r"Encountered error while reading file (\S+?)\.?(\s|$)")
_UNIVOCITY_LINE = re.compile(r"line=(\d+)")
_UNIVOCITY_PREFIX = re.compile(r"^[\w.]+Exception - ")
_PYTHON_ERROR = re.compile(r"^(\w+(?:\.\w+)*(?:Error|Exception)): (.*)$")
MAX_CHAIN = 12


def java_exception(exc: BaseException) -> Any:
    """The Java throwable behind a Py4J or PySpark exception, or None."""
    return getattr(exc, "java_exception", None) or getattr(exc, "_origin", None)


def java_chain(exc: BaseException) -> list[tuple[str, str]]:
    """``(class name, message)`` of the Java exception and its causes, outermost first."""
    chain: list[tuple[str, str]] = []
    current = java_exception(exc)
    try:
        while current is not None and len(chain) < MAX_CHAIN:
            chain.append((str(current.getClass().getName()), str(current.getMessage() or "")))
            cause = current.getCause()
            current = None if cause is None or cause.equals(current) else cause
    except Exception:  # the JVM is gone or the object is not a throwable: use what we have
        pass
    return chain


def _first(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def hadoop_version(spark: Any = None) -> Optional[str]:
    """The Hadoop version of the session's JVM (None when it cannot be asked)."""
    try:
        from pyspark import SparkContext

        context = spark.sparkContext if spark is not None else SparkContext._active_spark_context
        return str(context._jvm.org.apache.hadoop.util.VersionInfo.getVersion())
    except Exception:
        return None


def missing_filesystem(scheme: str, where: str = "", spark: Any = None) -> ConfigError:
    """The error for a URI whose scheme has no Hadoop file system on the classpath."""
    prefix = f"{where}: " if where else ""
    package, hadoop_versioned = CONNECTORS.get(scheme.lower(), (None, False))
    if package is None:
        return ConfigError(f"{prefix}no Hadoop file system for the scheme '{scheme}://'; add its "
                           "connector jar to [spark] packages (or spark-submit --packages)")
    version = hadoop_version(spark) if hadoop_versioned else None
    coordinates = f"{package}:{version}" if version else f"{package}:<version>"
    matching = (f" (matching Hadoop {version} of this Spark)" if version
                else " (matching the Hadoop version of this Spark)" if hadoop_versioned else "")
    hint = "; on plain Hadoop use s3a:// rather than s3://" if scheme.lower() in ("s3", "s3n") else ""
    return ConfigError(f"{prefix}no Hadoop file system for '{scheme}://': add the package "
                       f"{coordinates}{matching} to [spark] packages, or pass it to spark-submit "
                       f"--packages{hint}")


def translate(exc: BaseException, where: str = "", spark: Any = None) -> Optional[BatchrecError]:
    """A batchrec error for a recognised JVM failure, else None.

    Args:
        exc: what Spark raised.
        where: the option or path the caller was working on, prefixed to messages that name no file.
        spark: the session (to ask Hadoop's version for a missing connector).
    """
    if isinstance(exc, BatchrecError):
        return exc
    chain = java_chain(exc)
    if not chain:
        return None
    classes = [c for c, _ in chain]
    texts = [m for _, m in chain]
    everything = "\n".join(f"{c}: {m}" for c, m in chain)
    prefix = f"{where}: " if where else ""

    scheme = _NO_FILESYSTEM.search(everything)
    if scheme:
        return missing_filesystem(scheme.group(1), where, spark)
    missing_class = _CLASS_NOT_FOUND.search(everything)
    if missing_class:
        simple = missing_class.group(1).rsplit(".", 1)[-1]
        scheme_of_where = _SCHEME.match(where)
        scheme = _FILESYSTEM_CLASSES.get(simple) or (scheme_of_where.group(1) if scheme_of_where else None)
        if scheme:
            return missing_filesystem(scheme, where, spark)
        return ConfigError(f"{prefix}the Hadoop file system class {missing_class.group(1)} is not on the "
                           "classpath; add its connector package to [spark] packages")
    if any(c.endswith("OutOfMemoryError") for c in classes):
        return JobError(f"{prefix}Spark ran out of memory; raise [spark] driver_memory (or executor "
                        "memory on a cluster) or lower recommend.users_per_batch")

    read_file = _READ_FILE.search(everything)
    source = read_file.group(1) if read_file else None
    located = f"{source}: " if source else prefix
    root_class, root_text = chain[-1]
    root = _first(root_text) or root_class.rsplit(".", 1)[-1]
    if any("TextParsingException" in c for c in classes):
        parsing = next(m for c, m in chain if "TextParsingException" in c)
        line = _UNIVOCITY_LINE.search(parsing)
        at = f"line {int(line.group(1)) + 1}: " if line else ""
        detail = _UNIVOCITY_PREFIX.sub("", _first(parsing)).split(". To allow")[0].rstrip(".")
        return DataError(f"{located}{at}not valid CSV (RFC 4180): {detail}; inside a quoted field a "
                         'quote is written twice ("a""b") and nothing may follow the closing quote')
    if any(c.endswith(("MalformedInputException", "CharacterCodingException")) for c in classes):
        return DataError(f"{located}not UTF-8 text ({root}); expected UTF-8")
    parquet = any("parquet" in c.lower() for c in classes) or any(
        "parquet" in m.lower() or "FAILED_TO_UNCOMPRESS" in m or "snappy" in m.lower() for m in texts)
    if parquet and source is not None:
        return DataError(f"{source}: corrupt or not a Parquet file ({root})")
    if any(c.endswith("FileNotFoundException") for c in classes):
        return DataError(f"{located}a file disappeared while it was read ({root}); was it replaced "
                         "during the run?")
    if any(c.endswith("AccessDeniedException") for c in classes):
        return DataError(f"{located}access denied ({root})")
    if source is not None:
        return DataError(f"{source}: cannot read the file ({root_class.rsplit('.', 1)[-1]}: {root})")
    return None


def failed_file(exc: BaseException) -> Optional[str]:
    """The file Spark was reading when ``exc`` happened (from FAILED_READ_FILE), or None."""
    match = _READ_FILE.search("\n".join(f"{c}: {m}" for c, m in java_chain(exc)))
    return match.group(1) if match else None


def one_line(exc: BaseException) -> str:
    """The most useful single line describing ``exc`` (for failures :func:`translate` does not know)."""
    chain = java_chain(exc)
    if chain:
        root_class, root_text = chain[-1]
        return f"{root_class.rsplit('.', 1)[-1]}: {_first(root_text)}".rstrip(": ")
    text = str(exc)
    # A Python worker's failure carries the worker's traceback: its last "XxxError: ..." line says it.
    errors = [m for m in (_PYTHON_ERROR.match(line.strip()) for line in text.splitlines()) if m]
    if errors:
        return f"{errors[-1].group(1)}: {errors[-1].group(2)}"
    return f"{type(exc).__name__}: {_first(text)}".rstrip(": ")
