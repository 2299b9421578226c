"""The README's first command: the demo runs end to end and leaves real results behind."""

from __future__ import annotations

import json

from deltalake import DeltaTable

from batchrec import cli


def test_demo_generates_validates_trains_and_recommends(spark, tmp_path, capsys):
    workdir = tmp_path / "demo"
    code = cli.main(["demo", "--workdir", str(workdir), "--num-users", "200", "--num-items", "60",
                     "--num-interactions", "4000", "--run-date", "2026-11-20", "--master", "local[2]"])
    out = capsys.readouterr().out
    assert code == 0
    assert f"recommendations    {workdir}/output/recommendations" in out
    assert "example rows" in out

    report = json.loads((workdir / "validation.json").read_text())
    assert report["passed"] is True and report["failures"] == []
    recs = DeltaTable(str(workdir / "output" / "recommendations")).to_pyarrow_table().to_pylist()
    users = {r["user_id"] for r in recs}
    # Every user of the generated data that has history gets the default 25 items, ranks 1..25.
    assert len(users) > 150
    per_user = {}
    for r in recs:
        per_user.setdefault(r["user_id"], []).append(r["rank"])
    assert all(sorted(ranks) == list(range(1, 26)) for ranks in per_user.values())
    assert {r["recipe"] for r in recs} == {"user-personalization"}
    assert sorted(p.name for p in (workdir / "output" / "jsonl").iterdir()) == ["all-users.out"]
    lines = [json.loads(line) for line in (workdir / "output" / "jsonl" / "all-users.out").read_text().splitlines()]
    assert len(lines) == len(users)
    assert all(len(line["output"]["recommendedItems"]) == 25 for line in lines)
