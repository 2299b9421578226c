"""Jobs chained the way users chain them: a version trained with --rename/--schema feeds recommend."""

from __future__ import annotations

import json

from batchrec import cli

SMALL = ["--min-interactions", "0", "--min-users", "0", "--master", "local[2]"]
RENAMES = ["--rename", "userId=USER_ID", "--rename", "movieId=ITEM_ID",
           "--rename", "rating=EVENT_VALUE", "--rename", "timestamp=TIMESTAMP"]


def test_recommend_rereads_renamed_datasets_recorded_in_the_version(spark, tmp_path, capsys):
    ratings = tmp_path / "ratings.csv"
    rows = ["userId,movieId,rating,timestamp"]
    # Three users; m1 is seen by all, m2 by two, m3 by one: popularity order m1, m2, m3.
    for user, movies in {"1": ["m1", "m2", "m3"], "2": ["m1", "m2"], "3": ["m1"]}.items():
        rows += [f"{user},{movie},4.0,{964982703 + i}" for i, movie in enumerate(movies)]
    ratings.write_text("\n".join(rows) + "\n")
    solution, output, jsonl = tmp_path / "solution", tmp_path / "recs", tmp_path / "jsonl"

    assert cli.main(["train", "--recipe", "popularity-count", "--interactions", str(ratings),
                     *RENAMES, "--solution", str(solution), "--no-evaluate",
                     "--run-date", "2026-11-01", *SMALL]) == 0
    # No --interactions: recommend re-reads the recorded CSV with the recorded renames.
    assert cli.main(["recommend", "--solution", str(solution), "--output", str(output),
                     "--jsonl", str(jsonl), "--num-results", "3", "--run-date", "2026-11-01",
                     "--master", "local[2]"]) == 0
    capsys.readouterr()

    lines = [json.loads(line) for path in sorted(jsonl.glob("*")) if path.is_file()
             and not path.name.startswith((".", "_")) for line in path.read_text().splitlines()]
    by_user = {line["input"]["userId"]: line["output"]["recommendedItems"] for line in lines}
    # Seen items are excluded: user 1 has seen everything, user 3 gets the two it has not seen.
    assert by_user == {"1": [], "2": ["m3"], "3": ["m2", "m3"]}
    assert all("scores" not in line["output"] and line["error"] is None for line in lines)
