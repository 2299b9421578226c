"""The location guard: no output may overwrite an input, another output or a solution.

Every command resolves the locations it reads and writes through Hadoop's FileSystem before it
writes anything (:func:`check_locations`), so ``s3a://``, ``file://``, relative paths, ``DIR`` and
``DIR/`` compare as the same place, and refuses (``UsageError``, exit 2, naming both options):

* an output equal to, containing, or inside an input, a solution or another output;
* an output that already exists and is not of the kind the command writes. An existing location is
  replaced only when it looks like a previous output of the same kind:

  ========================  ================================================================
  kind                      an existing location is accepted when it is
  ========================  ================================================================
  :data:`KIND_FILE`         a file (a report); never a folder
  :data:`KIND_FOLDER`       a folder holding only Personalize output files (``*.out``): a
                            previous JSON-lines output (earlier batchrec versions wrote Spark
                            text part files, ``part-*.txt``/``.json``, which are accepted too);
                            no sub-folders (a Delta table has ``_delta_log/``)
  :data:`KIND_DATASETS`     a folder holding only ``interactions/``, ``items/``, ``users/``
                            (Spark CSV part files) and ``schemas/`` (``*.json``): a previous
                            ``batchrec generate`` output
  :data:`KIND_DELTA`        a Delta table (has ``_delta_log/``)
  :data:`KIND_SOLUTION`     a solution (has ``versions/``)
  :data:`KIND_ANY`          anything (no kind check)
  ========================  ================================================================

  Every folder kind also accepts an empty folder; names starting with ``.`` or ``_`` (checksums,
  Spark's markers, leftovers of an interrupted run) are ignored. Whatever else is there is refused,
  never replaced: the message names the first unexpected entry.

Inputs given as glob patterns count as the folder the pattern lists (everything under it may be
read). Local paths are also resolved through symbolic links, so a link to an input is that input.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Sequence

from batchrec import fs
from batchrec.errors import BatchrecError, JobError, UsageError

KIND_FILE = "file"
KIND_FOLDER = "folder"
KIND_DATASETS = "datasets"
KIND_DELTA = "delta"
KIND_SOLUTION = "solution"
KIND_ANY = "any"
KINDS = (KIND_FILE, KIND_FOLDER, KIND_DATASETS, KIND_DELTA, KIND_SOLUTION, KIND_ANY)

DELTA_LOG = "_delta_log"
VERSIONS_DIR = "versions"
DATASET_DIRS = ("interactions", "items", "users")
SCHEMAS_DIR = "schemas"
_GLOB = re.compile(r"[*?\[{]")
# A JSON-lines output: Personalize's <input file name>.out files (and the Spark text part files
# earlier versions wrote, so an upgrade does not refuse yesterday's output folder).
OUT_SUFFIX = ".out"
_JSONL_FILE = re.compile(r"^(.+\.out|part-.*\.(txt|json|jsonl)(\.[a-z0-9]+)?)$")
_CSV_PART = re.compile(r"^part-.*\.csv(\.[a-z0-9]+)?$")

# Inputs every command of this process reads besides its own options (the configuration files),
# and outputs it writes besides them (--summary-file); set by the CLI around the job.
_AMBIENT_INPUTS: contextvars.ContextVar[tuple["Location", ...]] = contextvars.ContextVar(
    "batchrec_ambient_inputs", default=())
_AMBIENT_OUTPUTS: contextvars.ContextVar[tuple["Location", ...]] = contextvars.ContextVar(
    "batchrec_ambient_outputs", default=())


@dataclass(frozen=True)
class Location:
    """One place a command reads or writes.

    Attributes:
        option: the command-line option that named it, e.g. ``"--output"`` (used in messages).
        uri: the path or URI as given.
        kind: what is (to be) there, one of :data:`KINDS`; checked for outputs only.
    """

    option: str
    uri: str
    kind: str = KIND_ANY


@dataclass(frozen=True)
class _Resolved:
    location: Location
    qualified: str
    scheme: str
    authority: str
    parts: tuple[str, ...]  # path components; for a glob, those before the first glob component
    glob: bool


def qualify(spark, uri: str) -> str:
    """The canonical, fully qualified form of ``uri``.

    Hadoop's ``FileSystem.makeQualified`` adds the scheme and authority of the default or named file
    system and resolves a relative path against the working directory; ``.`` and ``..`` are
    resolved, repeated and trailing slashes dropped, and a local path is resolved through symbolic
    links. ``DIR``, ``DIR/``, ``./DIR`` and ``file://`` + absolute ``DIR`` all give ``file:/abs/DIR``.

    Raises:
        UsageError: an empty or malformed path.
        ConfigError: no Hadoop file system for the scheme (the message names the package to add).
    """
    return _resolve(spark, Location("", uri)).qualified


def check_locations(spark, inputs: Sequence[Location], outputs: Sequence[Location]) -> dict[str, str]:
    """Resolve every location and refuse outputs that would destroy something; write nothing.

    Args:
        spark: the session (its Hadoop configuration resolves the paths).
        inputs: what the command reads, solutions included (kinds are not checked).
        outputs: what the command writes, each with the kind it writes.

    Returns:
        ``{option: qualified URI}`` for every input and output (an option given several times is
        keyed ``--schema``, ``--schema#2``, ...).

    Raises:
        UsageError: an output equals, contains or sits inside an input, a solution or another
            output; an output exists and is not of its kind, or sits under a file; a path is empty
            or malformed. The message names both options.
        ConfigError: a scheme without its Hadoop file system.
        JobError: a location could not be inspected (e.g. access denied).
    """
    for location in outputs:
        if location.kind not in KINDS:
            raise ValueError(f"unknown location kind {location.kind!r}; expected one of {KINDS}")
    everything = list(_AMBIENT_INPUTS.get()) + list(inputs)
    resolved_inputs = [_resolve(spark, loc) for loc in everything]
    resolved_outputs = [_resolve(spark, loc) for loc in list(outputs) + list(_AMBIENT_OUTPUTS.get())]
    for index, out in enumerate(resolved_outputs):
        if out.glob:
            raise UsageError(f"{_name(out)}: an output cannot be a glob pattern; expected one path")
        others = ([("solution" if r.location.kind == KIND_SOLUTION else "input", r) for r in resolved_inputs]
                  + [("output", r) for r in resolved_outputs[:index]])
        for what, other in others:
            relation = _relation(out, other)
            if relation:
                raise UsageError(
                    f"{_name(out)} {relation} the {what} {_name(other)}: an output may not equal, "
                    f"contain or sit inside an input, a solution or another output; choose another "
                    f"path for {out.location.option}")
    for out in resolved_outputs:
        _check_kind(spark, out)
    keys: dict[str, str] = {}
    for item in resolved_inputs + resolved_outputs:
        key, n = item.location.option, 1
        while key in keys:
            n += 1
            key = f"{item.location.option}#{n}"
        keys[key] = item.qualified
    return keys


@contextlib.contextmanager
def ambient_locations(inputs: Sequence[Location], outputs: Sequence[Location] = ()) -> Iterator[None]:
    """Count ``inputs`` (e.g. the configuration files) and ``outputs`` (e.g. ``--summary-file``) as
    inputs and outputs of every check in this block."""
    tokens = _AMBIENT_INPUTS.set(tuple(inputs)), _AMBIENT_OUTPUTS.set(tuple(outputs))
    try:
        yield
    finally:
        _AMBIENT_INPUTS.reset(tokens[0])
        _AMBIENT_OUTPUTS.reset(tokens[1])


def local_uri(path: str) -> str:
    """A ``file:`` URI for a path the driver reads with Python (configuration, schema files)."""
    return "file:" + os.path.abspath(os.fspath(path))


def _name(item: _Resolved) -> str:
    """``--option path``, with the qualified form when it says more than the given spelling."""
    given = item.location.uri
    same = item.qualified in (given.rstrip("/"), "file:" + given.rstrip("/"))
    shown = given if same else f"{given} ({item.qualified})"
    return f"{item.location.option} {shown}".strip()


def _resolve(spark, location: Location) -> _Resolved:
    uri = location.uri
    where = f"{location.option} {uri}".strip()
    if uri is None or not str(uri).strip():
        raise UsageError(f"{location.option or 'path'}: empty path; expected a file, folder or URI")
    uri = str(uri)
    try:
        filesystem, path = fs.hadoop_path(spark, uri)
        qualified = filesystem.makeQualified(path)
        java_uri = qualified.toUri()
        scheme = str(java_uri.getScheme() or "").lower()
        authority = str(java_uri.getAuthority() or "").lower()
        raw_path = str(java_uri.getPath() or "/")
    except BatchrecError as exc:
        message = str(exc)
        raise type(exc)(message if message.startswith(location.option) else f"{location.option} {message}"
                        if location.option else message) from exc
    except Exception as exc:  # a JVM failure while qualifying
        raise JobError(f"{where}: cannot resolve the location ({fs.first_line(exc)})") from exc
    components = [p for p in raw_path.split("/") if p]
    glob_at = next((i for i, p in enumerate(components) if _GLOB.search(p)), None)
    base = components if glob_at is None else components[:glob_at]
    pattern = [] if glob_at is None else components[glob_at:]
    if scheme == "file":
        base = [p for p in os.path.realpath("/" + "/".join(base)).split(os.sep) if p]
    qualified_text = f"{scheme}:{'//' + authority if authority else ''}/{'/'.join(base + pattern)}"
    return _Resolved(location, qualified_text, scheme, authority, tuple(base), glob_at is not None)


def _relation(out: _Resolved, other: _Resolved) -> Optional[str]:
    """How ``out`` overlaps ``other``: "is the same location as", "is inside", "contains", or None."""
    if (out.scheme, out.authority) != (other.scheme, other.authority):
        return None
    a, b = out.parts, other.parts
    if other.glob:
        # Anything under the folder a glob lists may be read by it.
        if a[: len(b)] == b:
            return "is inside the folder read by"
        if b[: len(a)] == a:
            return "contains"
        return None
    if a == b:
        return "is the same location as"
    if a[: len(b)] == b:
        return "is inside"
    if b[: len(a)] == a:
        return "contains"
    return None


def _check_kind(spark, out: _Resolved) -> None:
    """Refuse an existing output of another kind, or an output under an existing file."""
    location = out.location
    uri = out.qualified
    try:
        exists, is_dir = fs.status(spark, uri)
        if not exists:
            _check_parents(spark, out)
            return
        if location.kind == KIND_ANY:
            return
        if location.kind == KIND_FILE:
            if is_dir:
                raise UsageError(f"{_name(out)} is a folder; expected the path of a file (the report "
                                 "is written as one file, and a folder is never replaced)")
            return
        if not is_dir:
            raise UsageError(f"{_name(out)} is a file; expected a folder ({_DESCRIPTIONS[location.kind]}); "
                             "a file is never replaced by a folder: choose another path")
        problem = _CHECKERS[location.kind](spark, uri)
    except BatchrecError:
        raise
    except Exception as exc:  # access denied, a broken connection: say where
        raise JobError(f"{_name(out)}: cannot inspect the location ({fs.first_line(exc)})") from exc
    if problem:
        raise UsageError(f"{_name(out)} exists and is not {_DESCRIPTIONS[location.kind]} ({problem}); "
                         "refusing to replace it: choose another path or remove it yourself")


def _check_parents(spark, out: _Resolved) -> None:
    """The nearest existing ancestor of a new output must be a folder."""
    prefix = f"{out.scheme}:{'//' + out.authority if out.authority else ''}"
    parts = list(out.parts)
    while len(parts) > 1:
        parts.pop()
        parent = prefix + "/" + "/".join(parts)
        exists, is_dir = fs.status(spark, parent)
        if exists:
            if not is_dir:
                raise UsageError(f"{_name(out)}: {parent} is a file, not a folder; expected a path "
                                 "whose parent is a folder")
            return


def _visible(spark, uri: str) -> list[tuple[str, bool]]:
    return [(n, d) for n, d in fs.list_names(spark, uri) if not n.startswith((".", "_"))]


def _part_files(pattern: "re.Pattern[str]") -> Callable[[Any, str], Optional[str]]:
    """A checker accepting a folder of files matching ``pattern`` (and hidden files), no folders."""

    def check(spark, uri: str) -> Optional[str]:
        for name, is_dir in fs.list_names(spark, uri):
            if is_dir:
                return f"it holds {name}/ (a folder)"
            if not name.startswith((".", "_")) and not pattern.match(name):
                return f"it holds {name}"
        return None

    return check


_jsonl_files = _part_files(_JSONL_FILE)
_csv_parts = _part_files(_CSV_PART)


def _datasets(spark, uri: str) -> Optional[str]:
    for name, is_dir in _visible(spark, uri):
        if not is_dir or name not in DATASET_DIRS + (SCHEMAS_DIR,):
            return f"it holds {name}{'/' if is_dir else ''}"
        child = fs.join(uri, name)
        if name == SCHEMAS_DIR:
            odd = [n for n, d in _visible(spark, child) if d or not n.endswith(".json")]
            if odd:
                return f"it holds {name}/{odd[0]}"
        else:
            problem = _csv_parts(spark, child)
            if problem:
                return problem.replace("it holds ", f"it holds {name}/", 1)
    return None


def _delta(spark, uri: str) -> Optional[str]:
    names = fs.list_names(spark, uri)
    if any(n == DELTA_LOG and d for n, d in names):
        return None
    visible = [(n, d) for n, d in names if not n.startswith((".", "_"))]
    if not visible:
        return None
    name, is_dir = visible[0]
    return f"no {DELTA_LOG}/, and it holds {name}{'/' if is_dir else ''}"


def _solution(spark, uri: str) -> Optional[str]:
    visible = _visible(spark, uri)
    if not visible or any(n == VERSIONS_DIR and d for n, d in visible):
        return None
    name, is_dir = visible[0]
    return f"no {VERSIONS_DIR}/, and it holds {name}{'/' if is_dir else ''}"


_CHECKERS = {KIND_FOLDER: _jsonl_files, KIND_DATASETS: _datasets, KIND_DELTA: _delta,
             KIND_SOLUTION: _solution}
_DESCRIPTIONS = {
    KIND_FILE: "a file",
    KIND_FOLDER: "a previous JSON-lines output (only <input file name>.out files)",
    KIND_DATASETS: "a previous generated dataset (only interactions/, items/, users/, schemas/)",
    KIND_DELTA: "a Delta table",
    KIND_SOLUTION: "a solution folder (versions/)",
    KIND_ANY: "anything",
}
