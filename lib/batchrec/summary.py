"""The one-line JSON summary every command ends with: on stdout, in the log, and with
``--summary-file`` in a file written through ``batchrec.fs`` (for Airflow in cluster deploy mode,
where the driver's stdout never reaches the scheduler)."""

from __future__ import annotations

import json
import logging
from typing import Optional

log = logging.getLogger(__name__)


def emit(summary: dict, spark=None, summary_file: Optional[str] = None) -> None:
    """Log ``summary``, print it as one JSON line, and write it to ``summary_file`` atomically."""
    line = json.dumps(summary, sort_keys=False, default=str)
    log.info("summary %s", " ".join(f"{k}={v}" for k, v in summary.items()))
    print(line, flush=True)
    if summary_file:
        from batchrec import fs

        fs.write_text_atomic(spark, summary_file, line + "\n")
