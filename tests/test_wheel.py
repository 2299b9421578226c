"""An installed copy works outside the checkout: the wheel carries conf/*.toml, and ``batchrec
validate`` run from a folder elsewhere, with ``BATCHREC_CONF_DIR`` unset, uses the packaged
base.toml. The wheel is installed into a fresh virtual environment that reuses this one's packages
through a ``.pth`` file (nothing is downloaded for the install)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("setup.py", "README.md", "lib", "conf")


def run(command, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=900, **kwargs)
    assert result.returncode == 0, (command, result.stdout[-3000:], result.stderr[-3000:])
    return result


def build_wheel(tmp_path: Path) -> Path:
    """``pip wheel --no-deps`` of a copy of the sources (so the build writes nothing into the checkout)."""
    source = tmp_path / "source"
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, source])
    (wheel,) = dist.glob("batchrec-*.whl")
    return wheel


def fresh_venv(tmp_path: Path) -> Path:
    """A new virtual environment whose site-packages also sees this environment's packages."""
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    purelib = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    # Only this environment's site-packages folder: its own .pth files (the editable batchrec of the
    # checkout) are not processed, so `import batchrec` can only find the installed wheel.
    Path(purelib, "project_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def test_the_wheel_runs_validate_outside_the_checkout_with_its_packaged_configuration(tmp_path):
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert {"batchrec/conf/base.toml", "batchrec/conf/local.toml", "batchrec/conf/cluster.toml",
            "batchrec/conf/schemas/interactions.json", "batchrec/log4j2.properties"} <= set(names)

    venv = fresh_venv(tmp_path)
    python, batchrec = venv / "bin" / "python", venv / "bin" / "batchrec"
    run([python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", wheel])
    site = run([python, "-c", "import batchrec, os; print(os.path.dirname(batchrec.__file__))"]).stdout.strip()
    assert site.startswith(str(venv)), site  # the installed copy, not the checkout's lib/
    packaged = Path(site) / "conf" / "base.toml"
    assert packaged.is_file()

    work = tmp_path / "elsewhere"
    work.mkdir()
    header = "USER_ID,ITEM_ID,TIMESTAMP\n"
    (work / "interactions.csv").write_text(header + "".join(
        f"u{u},i{(u + k) % 7},{1700000000 + 60 * (u * 5 + k)}\n" for u in range(12) for k in range(4)))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BATCHREC_", "PYSPARK_", "PYTHONPATH", "VIRTUAL_ENV"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"

    shown = run([batchrec, "config", "show"], cwd=work, env=env).stdout
    assert f"#   base.toml: {packaged}" in shown

    summary_file = work / "summary.json"
    result = run([batchrec, "validate", "--interactions", "interactions.csv", "--min-interactions", "10",
                  "--min-users", "2", "--master", "local[1]", "--run-date", "2024-01-31",
                  "--summary-file", summary_file], cwd=work, env=env)
    assert f"config={packaged}" in result.stderr  # the packaged base.toml, named in the first log line
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["command"] == "validate" and summary["passed"] is True
    assert summary["datasets"]["interactions"]["rows_read"] == 48
    assert json.loads(summary_file.read_text()) == summary
    assert not (work / "conf").exists()
