"""Driver-side logging: one line per stage with row counts and durations, never secrets."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from typing import Iterator

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
