"""``batchrec doctor``: is this machine ready to run batchrec? One line per check, in the spirit of
``dbt debug``; exit 1 when any check fails.

Checks, in order:

* ``python``: the driver's Python is 3.10 or newer;
* ``python packages``: numpy, pyarrow, pandas, scipy, numba, boto3 and click import, with their versions;
* ``executor python``: ``PYSPARK_PYTHON``, when set to another interpreter, runs and has the same
  minor version as the driver's (Spark refuses a mismatch) and numpy and pyarrow;
* ``java``: ``$JAVA_HOME/bin/java`` or ``java`` on PATH, version 17 or 21 (what Spark 4.0 runs on);
* ``pyspark / delta-spark``: both installed and a matching pair: the versions batchrec pins when it
  is installed as a package, else the same major.minor (Delta's jars are built per Spark release);
* ``configuration``: ``base.toml`` is found (``BATCHREC_CONF_DIR``, ``./conf``, the checkout's or the
  packaged copy) and every layer loads and is valid (as for a job: ``--env``, ``--config``,
  ``BATCHREC_<SECTION>__<KEY>``);
* ``delta jars``: the jar list an earlier Spark start resolved is in the cache
  (``$BATCHREC_CACHE_DIR`` or ``~/.cache/batchrec``) and every jar is there, so no download
  happens; when nothing is cached, that Maven Central answers (the first start downloads them).
  No Spark session is started for this check; ``--start-spark`` starts a local session with Delta
  (resolving the jars when they are not cached) and writes and reads a small Delta table;
* ``output``: each ``--output`` location can be written: a probe file is created in it (or in its
  nearest existing parent) and removed. Local paths are checked directly; other URIs (s3a://,
  hdfs://) through a local Spark session's Hadoop file systems.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import click

MIN_PYTHON = (3, 10)
JAVA_VERSIONS = (17, 21)  # what Spark 4.0 runs on
PACKAGES = ("numpy", "pyarrow", "pandas", "scipy", "numba", "boto3", "click")
MAVEN_CENTRAL = "https://repo1.maven.org/maven2"
PROBE_PREFIX = "_batchrec_doctor_"
NETWORK_TIMEOUT_SECONDS = 10
OK, FAIL = "ok", "FAIL"


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    name: str
    ok: bool
    detail: str

    def line(self, width: int = 22) -> str:
        return f"{OK if self.ok else FAIL:<5} {self.name:<{width}} {self.detail}"


def run_checks(env: Optional[str] = None, config_file: Optional[Path] = None, outputs: Sequence[str] = (),
               start_spark: bool = False, master: Optional[str] = None,
               echo: Callable[[str], None] = click.echo) -> list[Check]:
    """Run every check, echoing each line as it completes; returns the checks."""
    checks: list[Check] = []

    def record(check: Check) -> None:
        checks.append(check)
        echo(check.line())

    record(check_python())
    record(check_packages())
    record(check_executor_python())
    record(check_java())
    record(check_spark_pair())
    settings, config_check = check_configuration(env, config_file)
    record(config_check)
    record(check_delta_jars(settings))
    local = [o for o in outputs if _is_local(o)]
    remote = [o for o in outputs if not _is_local(o)]
    for output in local:
        record(check_local_output(output))
    if start_spark or remote:
        spark, started = start_session(settings, master)
        record(started)
        if spark is not None:
            if start_spark:
                record(check_delta_round_trip(spark))
            for output in remote:
                record(check_hadoop_output(spark, output))
        else:
            for output in remote:
                record(Check("output", False, f"{output}: not checked, Spark did not start"))
    return checks


# --- Python ----------------------------------------------------------------------------------------

def check_python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    ok = sys.version_info[:2] >= MIN_PYTHON
    need = "" if ok else f"; batchrec needs Python {'.'.join(map(str, MIN_PYTHON))} or newer"
    return Check("python", ok, f"{version} ({sys.executable}){need}")


def check_packages() -> Check:
    found, missing = [], []
    for name in PACKAGES:
        try:
            importlib.import_module(name)
            found.append(f"{name} {importlib.metadata.version(name)}")
        except Exception as exc:  # ImportError, or a broken binary wheel
            missing.append(f"{name} ({type(exc).__name__})")
    if missing:
        return Check("python packages", False, f"cannot import {', '.join(missing)}; reinstall batchrec "
                                               "(pip install batchrec) in this environment")
    return Check("python packages", True, ", ".join(found))


def check_executor_python() -> Check:
    configured = os.environ.get("PYSPARK_PYTHON")
    if not configured or os.path.realpath(shutil.which(configured) or configured) == os.path.realpath(sys.executable):
        return Check("executor python", True, "the driver's (PYSPARK_PYTHON is not another interpreter)")
    code = ("import sys; import numpy, pyarrow; "
            "print('%d.%d' % sys.version_info[:2], numpy.__version__, pyarrow.__version__)")
    try:
        out = subprocess.run([configured, "-c", code], capture_output=True, text=True,
                             timeout=60, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return Check("executor python", False, f"PYSPARK_PYTHON={configured} does not run ({exc})")
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return Check("executor python", False, f"PYSPARK_PYTHON={configured}: {last} (executors need "
                                               "numpy and pyarrow)")
    minor, numpy_version, arrow_version = out.stdout.split()
    driver = "%d.%d" % sys.version_info[:2]
    if minor != driver:
        return Check("executor python", False, f"PYSPARK_PYTHON={configured} is Python {minor}, the driver "
                                               f"{driver}; Spark needs the same minor version on both")
    return Check("executor python", True, f"PYSPARK_PYTHON={configured}: Python {minor}, numpy "
                                          f"{numpy_version}, pyarrow {arrow_version}")


# --- Java, Spark, Delta ----------------------------------------------------------------------------

def java_command() -> Optional[str]:
    """``$JAVA_HOME/bin/java`` when set (what Spark's launcher uses), else ``java`` on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and os.path.isfile(os.path.join(home, "bin", "java")):
        return os.path.join(home, "bin", "java")
    return shutil.which("java")


def java_major(text: str) -> Optional[int]:
    """The major version in ``java -version`` output (``"17.0.15"`` -> 17, ``"1.8.0_392"`` -> 8)."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def check_java() -> Check:
    java = java_command()
    if java is None:
        return Check("java", False, "no java on PATH and no JAVA_HOME; install Java 17 (Spark 4.0 needs "
                                    "17 or 21)")
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        return Check("java", False, f"{java} does not run ({exc})")
    text = out.stderr + out.stdout
    major = java_major(text)
    first = (text.strip().splitlines() or ["?"])[0]
    if major not in JAVA_VERSIONS:
        return Check("java", False, f"{first} ({java}); Spark 4.0 needs Java "
                                    f"{' or '.join(map(str, JAVA_VERSIONS))}: set JAVA_HOME")
    return Check("java", True, f"{first} ({java})")


def pinned_versions() -> dict[str, str]:
    """``{package: version}`` batchrec's installed metadata pins with ``==`` ({} from a checkout
    that is not installed, or a zip shipped with spark-submit)."""
    try:
        requirements = importlib.metadata.requires("batchrec") or []
    except importlib.metadata.PackageNotFoundError:
        return {}
    pins = {}
    for requirement in requirements:
        match = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*\(?\s*==\s*([^\s;,)]+)", requirement)
        if match and ";" not in requirement:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def check_spark_pair() -> Check:
    name = "pyspark / delta-spark"
    try:
        pyspark_version = importlib.metadata.version("pyspark")
    except importlib.metadata.PackageNotFoundError:
        return Check(name, False, "pyspark is not installed")
    try:
        delta_version = importlib.metadata.version("delta-spark")
    except importlib.metadata.PackageNotFoundError:
        return Check(name, False, f"pyspark {pyspark_version}, delta-spark is not installed")
    found = f"pyspark {pyspark_version}, delta-spark {delta_version}"
    pins = pinned_versions()
    wanted = {k: pins[k] for k in ("pyspark", "delta-spark") if k in pins}
    if wanted:
        if wanted.get("pyspark", pyspark_version) != pyspark_version or \
                wanted.get("delta-spark", delta_version) != delta_version:
            return Check(name, False, f"{found}; batchrec is built for "
                         f"{', '.join(f'{k} {v}' for k, v in wanted.items())}: install exactly those "
                         "(Delta's jars break across Spark releases)")
        return Check(name, True, f"{found}: the pair batchrec pins")
    same = pyspark_version.split(".")[:2] == delta_version.split(".")[:2]
    if not same and delta_version.split(".")[:2] < ["4", "1"]:
        return Check(name, False, f"{found}; delta-spark {'.'.join(delta_version.split('.')[:2])}.x "
                                  f"needs pyspark {'.'.join(delta_version.split('.')[:2])}.x")
    return Check(name, True, f"{found}: a matching pair")


def check_delta_jars(settings) -> Check:
    """The cached jar list an earlier Spark start resolved, or else whether Maven Central answers."""
    from batchrec import spark as spark_factory

    name = "delta jars"
    packages = list(settings.spark.packages) if settings is not None else []  # a bad configuration: Delta's only
    try:
        coordinates = spark_factory.delta_coordinates() + packages
    except importlib.metadata.PackageNotFoundError:
        return Check(name, False, "delta-spark is not installed")
    manifest = spark_factory._manifest_path(coordinates)
    cached = spark_factory._cached_jars(manifest)
    if cached:
        return Check(name, True, f"{len(cached)} jars resolved before, listed in {manifest} "
                                 "(checked the cached list; no Spark session started)")
    maven = spark_factory.cache_dir() / "jars"
    if maven.is_dir() and any(maven.glob("*.jar")):
        return Check(name, True, f"{len(list(maven.glob('*.jar')))} jars in {maven} (the Maven fallback)")
    group, artifact, version = coordinates[0].split(":")
    url = f"{MAVEN_CENTRAL}/{group.replace('.', '/')}/{artifact}/{version}/{artifact}-{version}.pom"
    try:
        request = urllib.request.Request(url, method="HEAD")
        with urllib.request.urlopen(request, timeout=NETWORK_TIMEOUT_SECONDS):
            pass
    except Exception as exc:  # URLError, a proxy refusing, a timeout
        return Check(name, False, f"not cached in {spark_factory.cache_dir()} and Maven Central does not "
                                  f"answer ({exc}); behind a proxy see docs/reference.md, Troubleshooting")
    return Check(name, True, f"not cached yet; Maven Central answers, so the first Spark start downloads "
                             f"{', '.join(coordinates)} (or run batchrec doctor --start-spark)")


def start_session(settings, master: Optional[str]):
    """A local session (``master``, default ``local[1]``) for the checks that need one."""
    import dataclasses

    from batchrec.config import SparkSettings
    from batchrec.spark import get_spark

    spark_settings = settings.spark if settings is not None else SparkSettings()
    spark_settings = dataclasses.replace(spark_settings, master=master or "local[1]")
    started = time.perf_counter()
    try:
        spark = get_spark(spark_settings)
    except Exception as exc:
        from batchrec.failures import one_line

        return None, Check("spark", False, f"a local session did not start: {one_line(exc)}")
    return spark, Check("spark", True, f"local Spark {spark.version} started with Delta in "
                                       f"{time.perf_counter() - started:.0f}s")


def check_delta_round_trip(spark) -> Check:
    folder = tempfile.mkdtemp(prefix="batchrec-doctor-")
    try:
        path = os.path.join(folder, "table")
        spark.range(3).write.format("delta").save(path)
        rows = spark.read.format("delta").load(path).count()
    except Exception as exc:
        from batchrec.failures import one_line

        return Check("delta", False, f"writing and reading a Delta table failed: {one_line(exc)}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return Check("delta", rows == 3, f"wrote and read back a Delta table ({rows} rows)")


# --- configuration ---------------------------------------------------------------------------------

def check_configuration(env: Optional[str], config_file: Optional[Path]):
    """``(settings or None, check)``: base.toml found, every layer valid."""
    from batchrec.config import BASE_FILE, CONF_DIR_ENV, ConfigError, load_settings_with_origins

    try:
        settings, _, layers = load_settings_with_origins(env=env, config_file=config_file)
    except ConfigError as exc:
        return None, Check("configuration", False, str(exc))
    files = [f"{layer.label} {layer.path}" if layer.label != BASE_FILE else str(layer.path)
             for layer in layers if layer.path is not None]
    variables = [name for layer in layers for name in layer.origins.values()]
    if not any(layer.label == BASE_FILE for layer in layers):
        return settings, Check("configuration", False, f"no {BASE_FILE} found (${CONF_DIR_ENV}, ./conf, the "
                                                       "checkout's conf/, the packaged copy); defaults only")
    extra = f"; {len(variables)} BATCHREC_* variable(s)" if variables else ""
    return settings, Check("configuration", True, f"{', '.join(files)}{extra}; valid")


# --- outputs ---------------------------------------------------------------------------------------

def _is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file:")


def check_local_output(uri: str) -> Check:
    path = Path(uri.removeprefix("file://").removeprefix("file:")).expanduser().absolute()
    probe_dir = path
    while not probe_dir.exists() and probe_dir != probe_dir.parent:
        probe_dir = probe_dir.parent
    if probe_dir.is_file():
        if probe_dir != path:
            return Check("output", False, f"{uri}: sits under the file {probe_dir}")
        probe_dir = path.parent  # an existing file (a report) is replaced: its folder must be writable
    probe = probe_dir / f"{PROBE_PREFIX}{secrets.token_hex(4)}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return Check("output", False, f"{uri}: cannot write in {probe_dir} ({exc.strerror or exc})")
    return Check("output", True, f"{uri}: writable ({'exists' if path.exists() else f'created under {probe_dir}'})")


def check_hadoop_output(spark, uri: str) -> Check:
    from batchrec import fs

    try:
        target = uri.rstrip("/")
        exists, is_dir = fs.status(spark, target)
        parent = target
        while not exists and "/" in parent.split("://", 1)[-1].strip("/"):
            parent = parent.rsplit("/", 1)[0]
            exists, is_dir = fs.status(spark, parent)
        folder = parent if (exists and is_dir) or not exists else parent.rsplit("/", 1)[0]
        probe = fs.join(folder, f"{PROBE_PREFIX}{secrets.token_hex(4)}")
        fs.write_text(spark, probe, "")
        fs.delete(spark, probe)
    except Exception as exc:
        from batchrec.failures import one_line

        return Check("output", False, f"{uri}: cannot write there ({one_line(exc)})")
    return Check("output", True, f"{uri}: writable (probe file written and removed in {folder})")
