"""Run the CLI in-process and read its JSON summary line (the last line on stdout)."""

from __future__ import annotations

import json

from batchrec.cli import main


def run(capsys, *args) -> tuple[int, dict, str]:
    """``(exit code, summary, stderr)``; the summary is {} unless the command succeeded."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    return code, (json.loads(lines[-1]) if code == 0 and lines else {}), err
