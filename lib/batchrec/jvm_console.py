"""A quiet console for embedded runs: what the JVM prints on stderr passes through a filter.

Two things reach the console that log4j cannot silence, because the JVM's launcher prints them
before any logging exists:

* ``WARNING: Using incubator modules: jdk.incubator.vector``: Spark 4's launcher always adds that
  module, and the JVM warns about it at boot;
* Ivy's report when Spark resolves ``spark.jars.packages`` (the Delta jars on a first start):
  some thirty lines of modules, a table and "artifacts copied".

:func:`launch_gateway` starts the JVM the way pyspark does (``pyspark.java_gateway.launch_gateway``
with the session's options) with its stderr on a pipe. A daemon thread copies the pipe to the
process's stderr, line by line, holding back what is printed while the JVM starts: once the
gateway is up, the held lines are dropped unless they are log lines (kept at batchrec's DEBUG log
level instead); when the start fails, every held line is printed, Ivy's report included, because it
says why. After the start everything passes except the incubator warning.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import threading
from typing import Mapping, Optional

log = logging.getLogger(__name__)

INCUBATOR_WARNING = b"WARNING: Using incubator modules"
# Spark's log lines as batchrec's log4j2.properties formats them ("26/12/01 20:05:13 WARN ...").
_LOG_LINE = re.compile(rb"^\d{2}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} [A-Z]+ ")
_WAIT_SECONDS = 10.0


class _Filter:
    """Copies the JVM's stderr (read end of a pipe) to ``target`` (a file descriptor)."""

    def __init__(self, read_fd: int, target_fd: int):
        self._read = read_fd
        self._target = target_fd
        self._marker = b"batchrec-launched-" + secrets.token_hex(8).encode()
        self._held: list[bytes] = []
        self._starting = True
        self._launch_ok = False
        self._past_start = threading.Event()
        self._thread = threading.Thread(target=self._run, name="batchrec-jvm-stderr", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def end_of_start(self, write_fd: int, ok: bool) -> None:
        """Mark the end of the JVM's start in the stream (after anything it printed so far) and
        wait until the thread has handled what came before."""
        self._launch_ok = ok
        try:
            os.write(write_fd, self._marker + b"\n")
        finally:
            os.close(write_fd)
        self._past_start.wait(_WAIT_SECONDS)

    def _run(self) -> None:
        pending = b""
        try:
            while True:
                chunk = os.read(self._read, 65536)
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self._line(line + b"\n")
            if pending:
                self._line(pending)
        except OSError:  # the target went away (the process is exiting)
            pass
        finally:
            self._past_start.set()
            for fd in (self._read, self._target):
                try:
                    os.close(fd)
                except OSError:
                    pass

    def _line(self, line: bytes) -> None:
        if self._starting:
            if line.rstrip(b"\n") == self._marker:
                self._starting = False
                self._release()
                self._past_start.set()
            else:
                self._held.append(line)
            return
        if not line.startswith(INCUBATOR_WARNING):
            self._write(line)

    def _release(self) -> None:
        for line in self._held:
            if line.startswith(INCUBATOR_WARNING):
                continue
            if not self._launch_ok or _LOG_LINE.match(line):
                self._write(line)
            else:
                log.debug("jvm start: %s", line.decode("utf-8", "replace").rstrip())
        self._held = []

    def _write(self, line: bytes) -> None:
        view = memoryview(line)
        while view:
            written = os.write(self._target, view)
            view = view[written:]


def launch_gateway(options: Mapping[str, str]) -> bool:
    """Start the JVM for a SparkSession with ``options`` (what ``SparkSession.builder`` would pass),
    its stderr filtered; ``getOrCreate`` then uses this JVM.

    Returns:
        False when a JVM is already there (nothing was started), True when one was started.

    Raises:
        Exception: pyspark's own, when the JVM does not start (after printing what it said).
    """
    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway as pyspark_launch

    with SparkContext._lock:
        if SparkContext._gateway is not None:
            return False
        conf = SparkConf()
        for key, value in options.items():
            conf.set(key, value)
        read_fd, write_fd = os.pipe()
        console = _Filter(read_fd, os.dup(2))
        console.start()
        gateway: Optional[object] = None
        try:
            gateway = pyspark_launch(conf, popen_kwargs={"stderr": write_fd})
        finally:
            console.end_of_start(write_fd, ok=gateway is not None)
        SparkContext._gateway = gateway
        SparkContext._jvm = gateway.jvm
    return True
