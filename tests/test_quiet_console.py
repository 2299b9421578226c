"""A quiet console: no JVM incubator warning, no Ivy report unless resolution fails, no
CacheManager warnings. The filter is tested on a pipe; one real CLI run in a subprocess (its own
JVM) checks what reaches stderr."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from batchrec import jvm_console

REPO = Path(__file__).resolve().parents[1]
IVY_LINES = [b":: loading settings :: url = jar:file:/x/ivy.jar!/ivysettings.xml\n",
             b"Ivy Default Cache set to: ~/.cache/batchrec/ivy/cache\n",
             b"io.delta#delta-spark_2.13 added as a dependency\n",
             b"\tconfs: [default]\n", b"\t0 artifacts copied, 3 already retrieved (0kB/13ms)\n"]
INCUBATOR = b"WARNING: Using incubator modules: jdk.incubator.vector\n"
LOG_LINE = b"26/12/01 20:05:13 WARN SparkConf: a warning worth seeing\n"


def filtered(launch_ok: bool, during: list[bytes], after: list[bytes]) -> bytes:
    """What the filter lets through of ``during`` (the JVM's start) and ``after``."""
    child_read, child_write = os.pipe()  # the JVM's stderr
    out_read, out_write = os.pipe()      # our stderr
    console = jvm_console._Filter(child_read, out_write)
    console.start()
    jvm = os.dup(child_write)  # what the child process would hold
    for line in during:
        os.write(jvm, line)
    console.end_of_start(child_write, ok=launch_ok)
    for line in after:
        os.write(jvm, line)
    os.close(jvm)
    chunks: list[bytes] = []

    def read_all() -> None:  # until the filter closes its end (the JVM's stderr reached EOF)
        while chunk := os.read(out_read, 1 << 16):
            chunks.append(chunk)

    reader = threading.Thread(target=read_all)
    reader.start()
    console._thread.join(10)
    reader.join(10)
    os.close(out_read)
    return b"".join(chunks)


def test_a_successful_start_drops_ivy_and_the_incubator_warning_and_keeps_log_lines():
    out = filtered(True, [INCUBATOR] + IVY_LINES + [LOG_LINE], [b"later line\n", INCUBATOR, b"last"])
    assert out == LOG_LINE + b"later line\n" + b"last"


def test_a_failed_start_prints_everything_it_held_but_the_incubator_warning():
    out = filtered(False, [INCUBATOR] + IVY_LINES + [b":: UNRESOLVED DEPENDENCIES ::\n"], [])
    assert out == b"".join(IVY_LINES) + b":: UNRESOLVED DEPENDENCIES ::\n"


def test_a_cli_run_leaves_no_jvm_noise_on_the_console(tmp_path):
    csv = tmp_path / "interactions.csv"
    csv.write_text("USER_ID,ITEM_ID,TIMESTAMP\n" + "".join(
        f"u{u},i{(u + k) % 5},{1700000000 + 60 * (u * 3 + k)}\n" for u in range(10) for k in range(3)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHREC_")}
    result = subprocess.run(
        [sys.executable, "-m", "batchrec.cli", "train", "--recipe", "popularity-count", "--interactions",
         str(csv), "--solution", str(tmp_path / "solution"), "--min-interactions", "1", "--min-users", "0",
         "--master", "local[1]", "--run-date", "2024-01-31"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    for noise in ("incubator modules", "CacheManager", ":: loading settings", "Ivy Default Cache",
                  "resolution report", "artifacts copied"):
        assert noise not in result.stderr, result.stderr
    assert "stage=save" in result.stderr  # batchrec's own log lines are there
