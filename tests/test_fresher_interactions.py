"""Scoring jobs and ``--interactions``: no second validation, and no change when nothing is fresher.

A batch job excludes the pairs saved with the solution version (``seen_items``) plus, when
``--interactions`` names fresher data, that data read with a light parse (``batchrec.batch.eligibility``).
When the fresher data holds nothing the version has not seen, every output must be identical to a
run without it; one fresher interaction must remove exactly that pair (so the option is really read);
and the light read never runs validation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging

import pytest

from batchrec import cli
from batchrec.commands import recommend, segment, train
from batchrec.config import SegmentSettings, Settings, ValidationSettings

RUN_DATE = dt.date(2026, 3, 1)
END = int(dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc).timestamp())
NUM_USERS, NUM_ITEMS, ITEMS_PER_USER = 12, 8, 3
# Each user's history: three consecutive items, so users overlap and the factors mean something.
HISTORY = {f"u{u:02d}": [f"i{(u + k) % NUM_ITEMS}" for k in range(ITEMS_PER_USER)] for u in range(NUM_USERS)}
SETTINGS = Settings(validation=ValidationSettings(min_interactions=1, min_users_with_two_interactions=1))


def _csv(rows) -> str:
    return "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\n" + "".join(f"{u},{i},{t},click\n" for u, i, t in rows)


@pytest.fixture(scope="module")
def trained(spark, tmp_path_factory):
    """A small user-personalization solution and the interactions it was trained on."""
    folder = tmp_path_factory.mktemp("fresher")
    interactions = folder / "interactions.csv"
    interactions.write_text(_csv((u, i, END - 3600 * (k + 1)) for u, items in HISTORY.items()
                                 for k, i in enumerate(items)))
    solution = str(folder / "solution")
    train.run(spark, SETTINGS, RUN_DATE, interactions=str(interactions), recipe="user-personalization",
              solution=solution, params=(("rank", 3), ("maxIter", 3)))
    return folder, solution, interactions


def _table(spark, path) -> list[tuple]:
    return sorted(tuple(r) for r in spark.read.format("delta").load(str(path)).collect())


@contextlib.contextmanager
def stage_lines():
    """The ``stage=...`` lines batchrec logs meanwhile (a handler on the package's own logger, which
    the CLI may have detached from the root logger)."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            if record.getMessage().startswith("stage="):
                lines.append(record.getMessage())

    logger, handler = logging.getLogger("batchrec"), Collect(logging.INFO)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _lines(folder) -> list[dict]:
    """Every JSON line of a ``--jsonl`` folder (its data files, whatever they are named)."""
    files = [f for f in sorted(folder.iterdir()) if f.is_file() and not f.name.startswith(("_", "."))]
    return [json.loads(x) for f in files for x in f.read_text().splitlines()]


def test_recommend_is_identical_with_and_without_fresher_interactions_when_there_are_none(
        spark, tmp_path, trained):
    _, solution, interactions = trained
    plain, plain_lines = tmp_path / "plain", tmp_path / "plain-lines"
    first = recommend.run(spark, SETTINGS, RUN_DATE, solution=solution, output=str(plain),
                          jsonl=str(plain_lines))
    again, again_lines = tmp_path / "again", tmp_path / "again-lines"
    with stage_lines() as stages:
        second = recommend.run(spark, SETTINGS, RUN_DATE, solution=solution, output=str(again),
                               jsonl=str(again_lines), interactions=str(interactions))
    rows = _table(spark, plain)
    assert rows and rows == _table(spark, again)
    assert len(_lines(plain_lines)) == NUM_USERS and _lines(plain_lines) == _lines(again_lines)
    assert {k: first[k] for k in ("users", "rows", "users_with_results")} == \
           {k: second[k] for k in ("users", "rows", "users_with_results")} == \
           {"users": NUM_USERS, "rows": NUM_USERS * (NUM_ITEMS - ITEMS_PER_USER),
            "users_with_results": NUM_USERS}
    # The fresher file was read (light parse), and nothing was validated at scoring time.
    assert any(s.startswith("stage=read_interactions") for s in stages), stages
    assert not any(s.startswith("stage=validate_") for s in stages), stages


def test_one_fresher_interaction_removes_exactly_that_pair(spark, tmp_path, trained):
    folder, solution, interactions = trained
    plain = tmp_path / "plain"
    recommend.run(spark, SETTINGS, RUN_DATE, solution=solution, output=str(plain))
    ranks = {(row.user_id, row.item_id): row.rank for row in spark.read.format("delta").load(str(plain)).collect()}
    user = "u00"
    top = min((rank, item) for (u, item), rank in ranks.items() if u == user)[1]  # u00's first item
    fresher = tmp_path / "fresher.csv"
    fresher.write_text(interactions.read_text() + f"{user},{top},{END - 60},click\n")
    after_path = tmp_path / "after"
    recommend.run(spark, SETTINGS, RUN_DATE, solution=solution, output=str(after_path),
                  interactions=str(fresher))
    after = {(row.user_id, row.item_id) for row in spark.read.format("delta").load(str(after_path)).collect()}
    assert after == set(ranks) - {(user, top)}


def test_segments_excluding_interactors_are_identical_without_fresher_interactions(spark, tmp_path, trained):
    _, solution, interactions = trained
    settings = dataclasses.replace(SETTINGS, segment=SegmentSettings(num_results=NUM_USERS,
                                                                     exclude_interacted=True))
    source = tmp_path / "items.jsonl"
    source.write_text('{"itemId": "i0"}\n{"itemId": "i5"}\n')
    plain, again = tmp_path / "plain", tmp_path / "again"
    segment.run(spark, settings, RUN_DATE, solution=solution, output=str(plain), input_path=str(source))
    segment.run(spark, settings, RUN_DATE, solution=solution, output=str(again), input_path=str(source),
                interactions=str(interactions))
    rows = _table(spark, plain)
    assert rows == _table(spark, again)
    # Past interactors are left out: i0 is in the histories of u00, u06, u07 and u08; a segment as
    # large as the user base holds every other user.
    interacted = {u for u, items in HISTORY.items() if "i0" in items}
    assert interacted == {"u00", "u06", "u07", "u08"}
    got = {r.user_id for r in spark.read.format("delta").load(str(plain)).collect() if r.segment_id == "i0"}
    assert got == set(HISTORY) - interacted


def test_a_request_file_without_a_usable_line_writes_nothing(spark, tmp_path, trained, capsys):
    _, solution, _ = trained
    out = tmp_path / "recs"
    common = ["recommend", "--solution", solution, "--output", str(out), "--run-date", RUN_DATE.isoformat(),
              "--master", "local[2]", "--log-level", "WARNING"]
    good = tmp_path / "good.jsonl"
    good.write_text('{"userId": "u01"}\n')
    assert cli.main(common + ["--input", str(good)]) == 0
    capsys.readouterr()
    before = _table(spark, out)
    assert {r.user_id for r in spark.read.format("delta").load(str(out)).collect()} == {"u01"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"user": "u01"}\n[1, 2]\n{"userId": "u02"} trailing\n')
    assert cli.main(common + ["--input", str(bad)]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "none of its 3 lines is usable" in err[0] and "nothing was written" in err[0]
    assert _table(spark, out) == before
