"""prepare_interactions: each rule on tiny literal data with hand-computed confidences."""

from __future__ import annotations

import random
from collections import Counter, defaultdict

import pytest

from batchrec.columns import CONFIDENCE, ITEM_ID, TIMESTAMP, USER_ID
from batchrec.config import PrepareSettings
from batchrec.datasets.prepare import history_cap, prepare_interactions, select_events
from batchrec.errors import ConfigError, DataError

DAY = 86400
REF = 10 * DAY
SCHEMA = "USER_ID string, ITEM_ID string, EVENT_TYPE string, EVENT_VALUE double, TIMESTAMP long"
ROWS = [
    ("u1", "i1", "click", 1.0, 9 * DAY),
    ("u1", "i1", "purchase", 5.0, 9 * DAY + DAY // 2),
    ("u1", "i2", "cart", None, 8 * DAY),
    ("u2", "i1", "view", 0.2, 2 * DAY),
    ("u2", "i3", "Click", 2.0, 10 * DAY),
    ("u3", "i2", None, None, 5 * DAY),
]


def settings(**kwargs) -> PrepareSettings:
    kwargs.setdefault("max_user_history_length_percentile", 1.0)
    return PrepareSettings(**kwargs)


def confidences(df) -> dict:
    return {(r[USER_ID], r[ITEM_ID]): r[CONFIDENCE] for r in df.collect()}


@pytest.fixture(scope="module")
def interactions(spark):
    return spark.createDataFrame(ROWS, SCHEMA)


def test_default_counts_every_event_once_and_keeps_latest_timestamp(interactions):
    out = prepare_interactions(interactions, settings())
    assert out.columns == [USER_ID, ITEM_ID, CONFIDENCE, TIMESTAMP]
    assert dict(out.dtypes)[CONFIDENCE] == "double" and dict(out.dtypes)[TIMESTAMP] == "bigint"
    rows = {(r[USER_ID], r[ITEM_ID]): (r[CONFIDENCE], r[TIMESTAMP]) for r in out.collect()}
    assert rows == {
        ("u1", "i1"): (2.0, 9 * DAY + DAY // 2),
        ("u1", "i2"): (1.0, 8 * DAY),
        ("u2", "i1"): (1.0, 2 * DAY),
        ("u2", "i3"): (1.0, 10 * DAY),
        ("u3", "i2"): (1.0, 5 * DAY),
    }


def test_event_type_allow_list_is_case_insensitive_and_drops_null_types(interactions):
    out = prepare_interactions(interactions, settings(event_types=("click", "PURCHASE")))
    assert confidences(out) == {("u1", "i1"): 2.0, ("u2", "i3"): 1.0}


def test_event_weights_with_unlisted_and_null_types_weighing_one(interactions):
    out = prepare_interactions(interactions, settings(event_weights={"purchase": 3.0, "cart": 2.0}))
    assert confidences(out) == {
        ("u1", "i1"): 1.0 + 3.0,
        ("u1", "i2"): 2.0,
        ("u2", "i1"): 1.0,
        ("u2", "i3"): 1.0,
        ("u3", "i2"): 1.0,
    }


def test_value_threshold_keeps_equal_values_and_drops_nulls(interactions):
    out = prepare_interactions(interactions, settings(event_value_threshold=1.0))
    # click 1.0 (equal) and purchase 5.0 for u1/i1, click 2.0 for u2/i3; 0.2 and nulls go.
    assert confidences(out) == {("u1", "i1"): 2.0, ("u2", "i3"): 1.0}


@pytest.mark.parametrize("reference", [REF, None])
def test_lookback_window_counts_back_from_reference_time(interactions, reference):
    # Window (7 days, 10 days]: the event exactly at the reference time is inside.
    out = prepare_interactions(interactions, settings(lookback_days=3), reference_time=reference)
    assert confidences(out) == {("u1", "i1"): 2.0, ("u1", "i2"): 1.0, ("u2", "i3"): 1.0}


def test_lookback_drops_events_after_the_reference_time(interactions):
    out = prepare_interactions(interactions, settings(lookback_days=3), reference_time=9 * DAY)
    assert confidences(out) == {("u1", "i1"): 1.0, ("u1", "i2"): 1.0}


def test_half_life_decays_weights_by_age(interactions):
    out = prepare_interactions(
        interactions, settings(half_life_days=1.0, event_weights={"purchase": 3.0}), reference_time=REF
    )
    expected = {
        ("u1", "i1"): 0.5 ** 1 + 3.0 * 0.5 ** 0.5,
        ("u1", "i2"): 0.5 ** 2,
        ("u2", "i1"): 0.5 ** 8,
        ("u2", "i3"): 1.0,
        ("u3", "i2"): 0.5 ** 5,
    }
    got = confidences(out)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12), key


def test_half_life_never_boosts_events_after_the_reference_time(interactions):
    out = prepare_interactions(interactions, settings(half_life_days=1.0), reference_time=9 * DAY)
    # u2/i3 at day 10 is a day "in the future": age clamps to 0, weight 1 (not 2).
    assert confidences(out)[("u2", "i3")] == pytest.approx(1.0)


CAP_ROWS = [
    # u1 has 5 events; u2..u4 have 2: the median history is 2 events.
    ("u1", "a", "click", None, 1), ("u1", "b", "click", None, 2), ("u1", "c", "click", None, 2),
    ("u1", "d", "click", None, 2), ("u1", "e", "click", None, 1),
    ("u2", "a", "click", None, 1), ("u2", "b", "click", None, 2),
    ("u3", "a", "click", None, 1), ("u3", "c", "click", None, 2),
    ("u4", "d", "click", None, 1), ("u4", "d", "click", None, 3),
]


def test_history_cap_keeps_each_users_most_recent_events(spark):
    df = spark.createDataFrame(CAP_ROWS, SCHEMA)
    assert history_cap(df, 0.5) == 2
    out = prepare_interactions(df, settings(max_user_history_length_percentile=0.5))
    # u1: b, c, d share the latest timestamp; ITEM_ID breaks the tie, so b and c stay.
    assert confidences(out) == {
        ("u1", "b"): 1.0, ("u1", "c"): 1.0,
        ("u2", "a"): 1.0, ("u2", "b"): 1.0,
        ("u3", "a"): 1.0, ("u3", "c"): 1.0,
        ("u4", "d"): 2.0,
    }


def test_history_cap_above_the_95th_percentile_sorts_only_long_histories_and_keeps_the_same_rows(spark):
    """Past the 95th percentile only the users over the cap are windowed; the kept events are those
    a per-user sort by (time desc, item, event type) keeps, as for lower percentiles."""
    rng = random.Random(3)
    rows = []
    for u in range(120):
        for _ in range(1 + int(rng.expovariate(1 / 6))):
            rows.append((f"u{u:03d}", f"i{rng.randrange(30):02d}", rng.choice(["click", "buy"]), None,
                         rng.randrange(20)))
    df = spark.createDataFrame(rows, SCHEMA)
    percentile = 0.97
    cap = history_cap(df, percentile)
    by_user = defaultdict(list)
    for row in rows:
        by_user[row[0]].append(row)
    expected = Counter(r for events in by_user.values()
                       for r in sorted(events, key=lambda r: (-r[4], r[1], r[2]))[:cap])
    assert sum(len(v) > cap for v in by_user.values()) > 0  # some histories are cut
    out = select_events(df, settings(max_user_history_length_percentile=percentile))
    got = Counter((r.USER_ID, r.ITEM_ID, r.EVENT_TYPE, r.EVENT_VALUE, r.TIMESTAMP) for r in out.collect())
    assert got == expected


def test_history_cap_at_top_percentiles_keeps_everything(spark):
    df = spark.createDataFrame(CAP_ROWS, SCHEMA)
    for percentile in (0.99, 1.0):
        out = select_events(df, settings(max_user_history_length_percentile=percentile))
        assert out.count() == len(CAP_ROWS)


def test_event_types_without_event_type_column_is_a_data_error(spark):
    df = spark.createDataFrame([("u1", "i1", 1)], "USER_ID string, ITEM_ID string, TIMESTAMP long")
    with pytest.raises(DataError, match=r"prepare.event_types = \['click'\].*no EVENT_TYPE column"):
        prepare_interactions(df, settings(event_types=("click",)))
    with pytest.raises(DataError, match=r"event_value_threshold = 0.5.*no EVENT_VALUE column"):
        prepare_interactions(df, settings(event_value_threshold=0.5))
    # Without those rules the optional columns are not needed: every event weighs 1.
    assert confidences(prepare_interactions(df, settings(event_weights={"click": 2.0}))) == {("u1", "i1"): 1.0}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"event_weights": {"click": -1.0}}, r"prepare.event_weights.click = -1.0; expected a weight > 0"),
        ({"half_life_days": 0.0}, r"prepare.half_life_days = 0.0; expected > 0"),
        ({"lookback_days": 0}, r"prepare.lookback_days = 0; expected >= 1"),
        ({"max_user_history_length_percentile": 1.5},
         r"prepare.max_user_history_length_percentile = 1.5; expected 0 to 1"),
    ],
)
def test_impossible_settings_are_config_errors(interactions, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        prepare_interactions(interactions, settings(**kwargs))
