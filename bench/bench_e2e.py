"""Benchmark: the nightly path as whole processes, as users time it, against a plain MLlib script.

For each size in ``--sizes`` (interactions; users = size/40, items = size/200 unless given):

1. ``batchrec generate`` writes the datasets (CSV) with ``--run-date`` the data's last day (not
   part of the nightly total);
2. the nightly path, each a separate process: ``batchrec validate`` (with the generated schemas) ->
   ``batchrec train --recipe user-personalization`` (defaults, ``--param rank=64``) ->
   ``batchrec recommend --num-results 100`` for every user known to the model;
3. ``bench/plain_mllib.py`` on the same interactions in the same run: read CSV, ``StringIndexer``,
   ``ALS`` implicit at MLlib's defaults with rank 64, ``recommendForAllUsers``, anti-join the seen
   pairs, top 100 per user, Parquet;
4. with ``--pipeline``, the same three stages as one process: ``batchrec run`` on a pipeline file
   written under the run folder (stages validate, train, recommend; same datasets, rank and list
   length), as the nightly job runs without an orchestrator splitting it into tasks.

Per process: wall time; CPU seconds and memory of the process tree (the Python driver, its JVM and
the Python workers), sampled from /proc every ``--sample-seconds`` because the JVM is a grandchild
that ``getrusage`` does not see: peak PSS summed over the tree (shared pages split, not counted
twice; read every ``PSS_EVERY``-th sample, as reading it is not free) and peak RSS of the
largest process; plus ``getrusage(RUSAGE_CHILDREN)`` CPU as a
cross-check. Each stage's share of the nightly total, and the ``stage=...`` lines that batchrec
logs on stderr (:func:`batchrec.logs.stage`) parsed into a per-stage table. Cost growth: seconds per million
interactions and the exponent ``log(t2/t1)/log(n2/n1)`` between consecutive sizes (1 = linear).

Writes ``bench_e2e.json`` and ``bench_e2e.md`` under ``--workdir`` and prints the markdown.
Generated data is kept and reused. Usage::

    nice .venv/bin/python bench/bench_e2e.py --workdir /tmp/batchrec-bench-e2e \
        --sizes 1000000,5000000,10000000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional, Sequence

RUN_DATE = "2024-06-30"
RANK = 64
NUM_RESULTS = 100
NIGHTLY = ("validate", "train", "recommend")
DEFAULT_SIZES = "1000000,5000000,10000000"
# `logs.stage` lines: "12:00:01 INFO batchrec.x: stage=NAME key=value ... seconds=1.23"
STAGE_LINE = re.compile(r"\bstage=(?P<stage>\S+)(?P<fields>.*?)\sseconds=(?P<seconds>[0-9.]+)\s*$")
FIELD = re.compile(r"(\w+)=(\S+)")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
HERE = Path(__file__).resolve().parent
# PSS comes from smaps_rollup, which walks the process's page tables under its memory-map lock; at
# every sample (5 per second) the sampler took about 30% of a core on this 2-core machine.
PSS_EVERY = 10


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="/tmp/batchrec-bench-e2e")
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="interactions per run, comma-separated")
    parser.add_argument("--users", type=int, default=None, help="users per run (default size/40)")
    parser.add_argument("--items", type=int, default=None, help="items per run (default size/200)")
    parser.add_argument("--master", default=None, help="Spark master (default: batchrec's config)")
    parser.add_argument("--no-plain", action="store_true", help="skip the plain MLlib baseline")
    parser.add_argument("--pipeline", action="store_true",
                        help="also run validate, train and recommend as one `batchrec run` process")
    parser.add_argument("--sample-seconds", type=float, default=0.2)
    args = parser.parse_args(argv)

    from batchrec.config import load_settings

    spark_settings = load_settings().spark
    master = args.master or spark_settings.master
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    results = {"args": vars(args), "run_date": RUN_DATE, "master": master,
               "driver_memory": spark_settings.driver_memory, "cpus": os.cpu_count(),
               "load_average_at_start": os.getloadavg(), "sizes": []}
    for size in sizes:
        results["sizes"].append(run_size(work, size, args, master, spark_settings))
        _write(work, results)
    results["growth"] = growth(results["sizes"])
    results["load_average_at_end"] = os.getloadavg()
    markdown = _write(work, results)
    print(markdown)
    return 0


def run_size(work: Path, size: int, args, master: str, spark_settings) -> dict:
    """Generate (once), run the nightly path and the plain script at one size; their measurements."""
    users = args.users or max(50, size // 40)
    items = args.items or max(20, size // 200)
    data = work / f"data-{size}x-{users}u-{items}i"
    runs = work / f"run-{size}"
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir(parents=True)
    common = ["--run-date", RUN_DATE, "--master", master]
    entry: dict = {"interactions": size, "users": users, "items": items, "processes": {}}
    if not (data / "interactions" / "_SUCCESS").exists():
        entry["processes"]["generate"] = measure(
            _batchrec("generate", *common, "--users", users, "--items", items, "--interactions", size,
                      "--output", data), runs / "generate.log", args.sample_seconds)
    schemas = [a for kind in ("interactions", "items", "users")
               for a in ("--schema", data / "schemas" / f"{kind}.json")]
    datasets = ["--interactions", data / "interactions", "--items", data / "items", "--users", data / "users"]
    solution = runs / "solution"
    commands = {
        "validate": _batchrec("validate", *common, *datasets, *schemas, "--rejects", runs / "rejects",
                              "--report", runs / "validation.json"),
        "train": _batchrec("train", *common, *datasets, *schemas, "--recipe", "user-personalization",
                           "--solution", solution, "--param", f"rank={RANK}"),
        "recommend": _batchrec("recommend", *common, "--solution", solution, "--num-results", NUM_RESULTS,
                               "--output", runs / "recommendations"),
    }
    if not args.no_plain:
        commands["plain_mllib"] = [sys.executable, str(HERE / "plain_mllib.py"),
                                   "--interactions", str(data / "interactions"),
                                   "--output", str(runs / "plain-recommendations.parquet"),
                                   "--rank", str(RANK), "--num-results", str(NUM_RESULTS), "--master", master,
                                   "--driver-memory", spark_settings.driver_memory,
                                   "--shuffle-partitions", str(spark_settings.shuffle_partitions)]
    if args.pipeline:
        commands["pipeline"] = _batchrec("run", write_pipeline(runs, data), *common)
    for name, command in commands.items():
        entry["processes"][name] = measure(command, runs / f"{name}.log", args.sample_seconds)
    nightly = sum(entry["processes"][n]["wall_seconds"] for n in NIGHTLY)
    entry["nightly_wall_seconds"] = round(nightly, 2)
    for name in NIGHTLY:
        entry["processes"][name]["share"] = round(entry["processes"][name]["wall_seconds"] / nightly, 3)
    if "plain_mllib" in entry["processes"]:
        entry["nightly_vs_plain"] = round(nightly / entry["processes"]["plain_mllib"]["wall_seconds"], 2)
    if "pipeline" in entry["processes"]:
        entry["pipeline_vs_nightly"] = round(entry["processes"]["pipeline"]["wall_seconds"] / nightly, 2)
    return entry


def write_pipeline(runs: Path, data: Path) -> Path:
    """A pipeline file for ``batchrec run``: the nightly path of this benchmark, with its outputs
    under ``runs/pipeline``."""
    out = runs / "pipeline"
    schemas = ", ".join(json.dumps(str(data / "schemas" / f"{k}.json")) for k in ("interactions", "items", "users"))
    text = f"""[pipeline]
runs = {json.dumps(str(out / "runs"))}
stages = ["validate", "train", "recommend"]
progress_seconds = 0.0

[settings.recommend]
num_results = {NUM_RESULTS}

[datasets]
interactions = {json.dumps(str(data / "interactions"))}
items = {json.dumps(str(data / "items"))}
users = {json.dumps(str(data / "users"))}
format = "csv"
schemas = [{schemas}]

[validate]
rejects = {json.dumps(str(out / "rejects"))}

[solutions.personal]
recipe = "user-personalization"
path = {json.dumps(str(out / "solution"))}
params = {{ rank = {RANK} }}

[recommend]
solution = "personal"
output = {json.dumps(str(out / "recommendations"))}
"""
    path = runs / "pipeline.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _batchrec(command: str, *args) -> list[str]:
    return [sys.executable, "-m", "batchrec.cli", command, *map(str, args)]


def measure(command: list[str], log_path: Path, sample_seconds: float) -> dict:
    """Run ``command``; its wall time, tree CPU, peak tree RSS and parsed stage lines.

    Raises:
        RuntimeError: the command exits non-zero (its stderr tail is in the message).
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
        sampler = TreeSampler(process.pid, sample_seconds)
        sampler.start()
        stdout, _ = process.communicate()
        sampler.stop()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    stderr = log_path.read_text(encoding="utf-8", errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ... exited {process.returncode}: "
                           f"{stderr.strip()[-2000:]}")
    return {"command": " ".join(command[1:4]),
            "wall_seconds": round(wall, 2),
            "cpu_seconds_tree": round(sampler.cpu_seconds, 2),
            "cpu_seconds_rusage_children": round((after.ru_utime - before.ru_utime)
                                                 + (after.ru_stime - before.ru_stime), 2),
            "peak_pss_mb_tree": round(sampler.peak_pss / 2**20),
            "peak_rss_mb_largest_process": round(sampler.peak_rss / 2**20),
            "stages": parse_stages(stderr), "stdout_tail": stdout.strip().splitlines()[-3:]}


class TreeSampler(threading.Thread):
    """Samples a process and its descendants from /proc: memory and CPU seconds last seen.

    Memory: the peak of the tree's summed PSS (forked Python workers share pages with their parent;
    PSS splits shared pages among the processes instead of counting them in each) and the peak RSS
    of its largest process (the JVM).
    """

    def __init__(self, pid: int, every: float):
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.peak_pss = self.peak_rss = 0
        self._samples = 0
        self._cpu: dict[int, float] = {}
        self._stop_event = threading.Event()

    @property
    def cpu_seconds(self) -> float:
        return sum(self._cpu.values())

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(self.every)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def sample(self) -> None:
        children: dict[int, list[int]] = {}
        stats: dict[int, list[str]] = {}
        for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", encoding="utf-8") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:  # the process ended meanwhile
                continue
            stats[int(entry)] = fields
            children.setdefault(int(fields[1]), []).append(int(entry))
        tree, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            if pid in stats:
                tree.append(pid)
            todo += children.get(pid, [])
        pss, read_pss = 0, self._samples % PSS_EVERY == 0
        self._samples += 1
        for pid in tree:
            fields = stats[pid]
            # Fields after the command name: ppid=1, utime=11, stime=12, rss=21 (pages).
            self._cpu[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
            rss = int(fields[21]) * PAGE_SIZE
            self.peak_rss = max(self.peak_rss, rss)
            pss += _pss(pid, rss) if read_pss else 0
        self.peak_pss = max(self.peak_pss, pss)


def _pss(pid: int, rss: int) -> int:
    """The process's proportional set size in bytes (its RSS where the kernel does not tell)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss


def parse_stages(stderr: str) -> list[dict]:
    """The ``stage=NAME ... seconds=S`` lines of batchrec's log, in order."""
    out = []
    for line in stderr.splitlines():
        match = STAGE_LINE.search(line)
        if match:
            fields = dict(FIELD.findall(match["fields"]))
            out.append({"stage": match["stage"], "seconds": float(match["seconds"]), **fields})
    return out


def growth(entries: list[dict]) -> list[dict]:
    """Seconds per million interactions and the growth exponent between consecutive sizes."""
    names = [n for n in (*NIGHTLY, "plain_mllib") if all(n in e["processes"] for e in entries)]
    out = []
    for prev, cur in zip(entries, entries[1:]):
        ratio = cur["interactions"] / prev["interactions"]
        row = {"from": prev["interactions"], "to": cur["interactions"]}
        for name in names + ["nightly"]:
            t0, t1 = _seconds(prev, name), _seconds(cur, name)
            row[name] = round(math.log(t1 / t0) / math.log(ratio), 2) if t0 > 0 and t1 > 0 and ratio > 1 \
                else None
        out.append(row)
    return out


def _seconds(entry: dict, name: str) -> float:
    return entry["nightly_wall_seconds"] if name == "nightly" else entry["processes"][name]["wall_seconds"]


def to_markdown(results: dict) -> str:
    """The results as markdown tables: processes, batchrec stages, growth."""
    lines = [f"# bench_e2e ({results['master']}, driver memory {results['driver_memory']}, "
             f"{results['cpus']} CPUs, load average at start {results['load_average_at_start'][0]:.2f})", ""]
    lines += ["| interactions | process | wall s | share of nightly | s per 1M | CPU s | peak PSS MB | "
              "peak RSS MB (largest process) |", "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for entry in results["sizes"]:
        millions = entry["interactions"] / 1e6
        for name, p in entry["processes"].items():
            share = f"{p['share']:.1%}" if "share" in p else ""
            lines.append(f"| {entry['interactions']:,} | {name} | {p['wall_seconds']:.1f} | {share} | "
                         f"{p['wall_seconds'] / millions:.1f} | {p['cpu_seconds_tree']:.1f} | "
                         f"{p['peak_pss_mb_tree']} | {p['peak_rss_mb_largest_process']} |")
        extra = f" ({entry['nightly_vs_plain']}x plain MLlib)" if "nightly_vs_plain" in entry else ""
        if "pipeline_vs_nightly" in entry:
            extra += f"; one `batchrec run` process: {entry['pipeline_vs_nightly']}x the total"
        lines.append(f"| {entry['interactions']:,} | **nightly total**{extra} | "
                     f"{entry['nightly_wall_seconds']:.1f} | 100% | "
                     f"{entry['nightly_wall_seconds'] / millions:.1f} | | | |")
    lines += ["", "Stages logged by batchrec (seconds):", "",
              "| interactions | process | stage | seconds | details |", "|---:|---|---|---:|---|"]
    for entry in results["sizes"]:
        for name in (*NIGHTLY, "pipeline"):
            for s in entry["processes"].get(name, {}).get("stages", []):
                details = " ".join(f"{k}={v}" for k, v in s.items() if k not in ("stage", "seconds")
                                   and "/" not in str(v))
                lines.append(f"| {entry['interactions']:,} | {name} | {s['stage']} | {s['seconds']:.2f} | "
                             f"{details} |")
    if results.get("growth"):
        names = [k for k in results["growth"][0] if k not in ("from", "to")]
        lines += ["", "Cost growth: exponent of wall time vs interactions (1.0 = linear):", "",
                  "| from | to | " + " | ".join(names) + " |", "|---:|---:|" + "---:|" * len(names)]
        for row in results["growth"]:
            lines.append(f"| {row['from']:,} | {row['to']:,} | "
                         + " | ".join("" if row[n] is None else f"{row[n]:.2f}" for n in names) + " |")
    return "\n".join(lines) + "\n"


def _write(work: Path, results: dict) -> str:
    (work / "bench_e2e.json").write_text(json.dumps(results, indent=2, default=str))
    markdown = to_markdown(results)
    (work / "bench_e2e.md").write_text(markdown)
    return markdown


if __name__ == "__main__":
    raise SystemExit(main())
