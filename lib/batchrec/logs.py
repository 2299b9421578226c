"""Driver-side logging: one line per stage with row counts and durations, progress lines for long
stages (:func:`heartbeat`), never secrets."""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from typing import Callable, Iterator, Optional

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: str = "INFO") -> None:
    """Send batchrec's log lines to stderr; called once by the CLI entry point."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, "%H:%M:%S"))
    root = logging.getLogger("batchrec")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    # py4j logs every gateway call at INFO.
    logging.getLogger("py4j").setLevel(logging.WARNING)


@contextlib.contextmanager
def stage(log: logging.Logger, name: str, **fields: object) -> Iterator[dict]:
    """Time a stage and log one line when it ends.

    The body may add counts to the yielded dict (``info["rows"] = n``); they are logged with the
    duration, e.g. ``stage=read rows=1000 seconds=1.2``.
    """
    info: dict = dict(fields)
    start = time.perf_counter()
    try:
        yield info
    finally:
        parts = " ".join(f"{k}={v}" for k, v in info.items())
        log.info("stage=%s %s seconds=%.2f", name, parts, time.perf_counter() - start)


class LineLogger:
    """A text stream that turns what is written to it into log lines (one per line of text).

    The pipeline runs jobs that print (the validation table, an export's JSON line); written here,
    their output reaches the log on stderr with the stage's name, and stdout keeps only the run's
    summary line. With ``--quiet`` (level ERROR) they are not shown at all.
    """

    def __init__(self, log: logging.Logger, prefix: str, level: int = logging.INFO):
        self.log = log
        self.prefix = prefix
        self.level = level
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            if line.strip():
                self.log.log(self.level, "%s%s", self.prefix, line.rstrip())
        return len(text)

    def flush(self) -> None:
        if self._pending.strip():
            self.log.log(self.level, "%s%s", self.prefix, self._pending.rstrip())
        self._pending = ""

    def isatty(self) -> bool:
        return False


def spark_progress(spark) -> dict:
    """What Spark is doing now: tasks done and total over its active stages, input rows read by
    them so far, and the active stages' names (empty when there is nothing to ask or it fails).

    ``SparkContext.statusTracker()`` gives the task counts; the rows come from Spark's status
    store (updated as tasks finish), where the JVM offers it.
    """
    if spark is None:
        return {}
    try:
        tracker = spark.sparkContext.statusTracker()
        infos = [tracker.getStageInfo(s) for s in tracker.getActiveStageIds()]
        infos = [i for i in infos if i is not None]
    except Exception:  # the session is stopping, or the gateway is busy closing
        return {}
    if not infos:
        return {}
    found = {"tasks_done": sum(i.numCompletedTasks for i in infos),
             "tasks_total": sum(i.numTasks for i in infos),
             # Spark's call-site names ("save", "collect"); its own closures ($anonfun...) say nothing.
             "spark_stages": sorted({n for n in (i.name.split(" at ")[0] for i in infos) if not n.startswith("$")}),
             "stage_ids": tuple(sorted(i.stageId for i in infos))}
    try:
        jvm = spark.sparkContext._jvm
        stages = jvm.scala.jdk.javaapi.CollectionConverters.asJava(
            spark.sparkContext._jsc.sc().statusStore().activeStages())
        found["rows"] = int(sum(s.inputRecords() + s.shuffleReadRecords() for s in stages))
    except Exception:  # another Spark version's internals: the task counts are enough
        pass
    return found


def format_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Heartbeat:
    """Logs a progress line every ``interval`` seconds while a long stage runs (see :func:`heartbeat`)."""

    def __init__(self, log: logging.Logger, stage: str, spark=None, interval: float = 30.0,
                 expected_seconds: Optional[float] = None, rows: Optional[Callable[[], Optional[int]]] = None):
        self.log = log
        self.stage = stage
        self.spark = spark
        self.interval = interval
        self.expected_seconds = expected_seconds
        self.rows = rows
        self.beats = 0
        self._start = time.monotonic()
        self._stop = threading.Event()
        self._seen: dict[tuple, tuple[float, int]] = {}  # active stage ids -> (first seen, tasks done)
        self._thread = threading.Thread(target=self._run, name=f"batchrec-heartbeat-{stage}", daemon=True)

    def start(self) -> "Heartbeat":
        if self.interval > 0:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.log.info("%s", self.line())
                self.beats += 1
            except Exception as exc:  # progress is a courtesy: never let it break the stage
                self.log.debug("progress line failed: %s", exc)

    def line(self) -> str:
        """``progress stage=train elapsed=2m05s tasks=40/64 rows=1200000 eta=1m10s (...)``."""
        now = time.monotonic()
        elapsed = now - self._start
        parts = [f"progress stage={self.stage}", f"elapsed={format_duration(elapsed)}"]
        spark = spark_progress(self.spark)
        rows = self.rows() if self.rows is not None else spark.get("rows")
        eta = None
        if spark.get("tasks_total"):
            done, total = spark["tasks_done"], spark["tasks_total"]
            parts.append(f"tasks={done}/{total}")
            key = spark["stage_ids"]
            first_seen, done_then = self._seen.setdefault(key, (now, done))
            if done > done_then and now > first_seen:  # the active Spark stages' pace so far
                eta = (total - done) * (now - first_seen) / (done - done_then)
            if spark["spark_stages"]:
                parts.append(f"spark_stage={'+'.join(spark['spark_stages'])[:60]}")
        if rows is not None:
            parts.append(f"rows={rows}")
        if self.expected_seconds:  # the previous run's duration of this stage: the better estimate
            left = max(self.expected_seconds - elapsed, 0.0)
            parts.append(f"eta={format_duration(left)} (previous run: {format_duration(self.expected_seconds)})")
        elif eta is not None:
            parts.append(f"eta={format_duration(eta)} (active Spark stage)")
        else:
            parts.append("eta=unknown")
        return " ".join(parts)


@contextlib.contextmanager
def heartbeat(log: logging.Logger, stage: str, spark=None, interval: float = 30.0,
              expected_seconds: Optional[float] = None,
              rows: Optional[Callable[[], Optional[int]]] = None) -> Iterator[Heartbeat]:
    """Log a progress line for ``stage`` every ``interval`` seconds (0: never) while the body runs.

    Each line has the elapsed time, the tasks done/total of Spark's active stages (from
    ``spark.sparkContext.statusTracker()``), the rows read so far (``rows()`` when given, else
    Spark's count) and an estimate of the time left: from ``expected_seconds`` (e.g. the previous
    run's duration) when known, else from the pace of the active Spark stage. A stage shorter
    than ``interval`` logs nothing. The poller is a daemon thread; it stops with the body.
    """
    beat = Heartbeat(log, stage, spark, interval, expected_seconds, rows).start()
    try:
        yield beat
    finally:
        beat.stop()
