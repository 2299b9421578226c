"""DynamoDB export against real DynamoDB-compatible servers (moto's server and dynalite, over HTTP).

Expected tables are built here in plain Python from the input rows, independently of the exporter's
item builder. Faults (throttling, ``UnprocessedItems``, lost writes) come from
``dynamo_servers.FaultProxy`` in front of the real server; boto3 itself is never mocked.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from batchrec.config import DynamoDBSettings, Settings
from batchrec.errors import ConfigError, DataError, JobError, UsageError
from batchrec.sinks import dynamodb_items as items_model
from batchrec.sinks.dynamodb_items import (Stamp, build_item, item_size, key_part, number_value, plain_item,
                                           unkey_part)
from batchrec.sinks.dynamodb_writer import TokenBucket, backoff_seconds

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dynamo_servers import (REPO, TEST_CREDENTIALS, FaultProxy, child_environment,  # noqa: E402
                            start_dynalite, start_moto)

# Spark's Python workers inherit the environment of the JVM, which starts after collection: the
# servers' dummy credentials must be in place before then.
for _name, _value in TEST_CREDENTIALS.items():
    os.environ.setdefault(_name, _value)

RUN = dt.date(2026, 11, 20)
EARLIER = dt.date(2026, 11, 19)
NOW = dt.datetime(2026, 11, 21, 3, 0, 0, tzinfo=dt.timezone.utc)
GENERATED_AT = "2026-11-21T03:00:00Z"
TTL_DAYS = 7
TTL = int(NOW.timestamp()) + TTL_DAYS * 86400
REGION = "us-east-1"
RECIPE = "user-personalization"


# ---------------------------------------------------------------------------------------------
# servers and helpers


@pytest.fixture(scope="session")
def server_logs(tmp_path_factory):
    return tmp_path_factory.mktemp("dynamo-servers")


@pytest.fixture(scope="session")
def moto_server(server_logs):
    server = start_moto(server_logs)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def dynalite_server(server_logs):
    server = start_dynalite(server_logs)
    yield server
    server.stop()


@pytest.fixture(params=["moto", "dynalite"])
def server(request):
    return request.getfixturevalue(f"{request.param}_server")


@pytest.fixture
def proxy_for():
    proxies = []

    def make(server, plan):
        proxy = FaultProxy(server.url, plan)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.stop()


# The shared recommendations table (written once): run RUN of sol-a and sol-b, run EARLIER of sol-a.
def _rows_a():
    return rec_rows(30, 5) + rec_rows(0, 3, users=["a#b%c", "ü-ser"])


def _rows_b():
    return rec_rows(6, 4, seed=9)


@pytest.fixture(scope="module")
def recs_path(spark, tmp_path_factory):
    path = tmp_path_factory.mktemp("shared-recs") / "recs"
    write_recs(spark, path, _rows_a())
    write_recs(spark, path, rec_rows(12, 2, seed=5), run_date=EARLIER)
    write_recs(spark, path, _rows_b(), solution="sol-b", version="v7")
    return path


def client_for(url):
    import boto3

    return boto3.client("dynamodb", endpoint_url=url, region_name=REGION)


def new_table(prefix="recs"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def settings_with(**dynamodb) -> Settings:
    defaults = dict(progress_seconds=0.0, writers=2, verify_sample=1000, backoff_base_seconds=0.01,
                    backoff_max_seconds=0.05)
    defaults.update(dynamodb)
    return Settings(dynamodb=DynamoDBSettings(**defaults))


def scan(client, table) -> dict:
    """Every item of the table as plain Python, by (pk, sk)."""
    found, start = {}, None
    while True:
        kwargs = {"TableName": table, "ConsistentRead": True}
        if start:
            kwargs["ExclusiveStartKey"] = start
        page = client.scan(**kwargs)
        for item in page["Items"]:
            found[(item["pk"]["S"], item["sk"]["S"])] = plain_item(item)
        start = page.get("LastEvaluatedKey")
        if not start:
            return found


def rec_rows(n_users, n_items, seed=0, users=None):
    """(user_id, rank, item_id, score, reason); every 4th user's last item is a popular backfill (no score)."""
    rows = []
    for u, user in enumerate(users or [f"u{i:03d}" for i in range(n_users)]):
        for rank in range(1, n_items + 1):
            backfill = u % 4 == 0 and rank == n_items
            score = None if backfill else round(1.0 - rank * 0.05 + (u + seed) * 0.001, 6)
            rows.append((user, rank, f"i{(u * 7 + rank * 3 + seed) % 101:03d}", score,
                         "popular" if backfill else "model"))
    return rows


def write_recs(spark, path, rows, run_date=RUN, solution="sol-a", version="v1"):
    from batchrec.sinks import delta

    frame = spark.createDataFrame(rows, "USER_ID string, rank int, ITEM_ID string, score double, reason string")
    delta.write_run(frame, str(path), run_date, solution, version, RECIPE)


def write_shape(spark, path, rows, ddl, run_date=RUN, solution="sol-a"):
    """Rows of the related/segments shape into a Delta table, one replaceWhere commit per run."""
    frame = spark.createDataFrame(rows, ddl)
    (frame.write.format("delta").mode("overwrite")
     .option("replaceWhere", f"run_date = DATE'{run_date.isoformat()}' AND solution = '{solution}'")
     .partitionBy("run_date").save(str(path)))


def expected_recs(rows, solution="sol-a", version="v1", run_date=RUN, ttl=TTL, generated=GENERATED_AT):
    """The recommendations items, built by hand from the rows."""
    by_user = {}
    for user, rank, item, score, reason in rows:
        by_user.setdefault(user, []).append((rank, item, score, reason))
    out = {}
    for user, entries in by_user.items():
        entries.sort()
        pk = "U#" + user.replace("%", "%25").replace("#", "%23")
        item = {"pk": pk, "sk": f"RECS#{solution}", "kind": "recommendations", "user_id": user,
                "solution": solution, "solution_version": version, "recipe": RECIPE,
                "run_date": run_date.isoformat(), "generated_at": generated,
                "item_ids": [e[1] for e in entries], "scores": [e[2] for e in entries],
                "reasons": [e[3] for e in entries]}
        if ttl:
            item["ttl"] = ttl
        out[(pk, item["sk"])] = item
    return out


def export(spark, path, table, url, settings=None, **kwargs):
    from batchrec.sinks.dynamodb import export_run

    kwargs.setdefault("now", NOW)
    return export_run(spark, str(path), kwargs.pop("run_date", RUN), kwargs.pop("solution", None),
                      settings or settings_with(), table, url, REGION, **kwargs)


# ---------------------------------------------------------------------------------------------
# the data model, without servers


def test_key_parts_are_escaped_and_reversible():
    assert key_part("a#b%c") == "a%23b%25c"
    assert unkey_part(key_part("a#b%c%23")) == "a#b%c%23"
    # Without escaping, solution "a#b" + segment "c" and solution "a" + segment "b#c" would collide.
    assert items_model.segment_page_key("a#b", "c", 0) != items_model.segment_page_key("a", "b#c", 0)
    assert items_model.recommendations_key("u#1", "s") == {"pk": {"S": "U#u%231"}, "sk": {"S": "RECS#s"}}
    assert items_model.segment_page_key("s", "g", 12)["sk"] == {"S": "P#000012"}


def test_numbers_dynamodb_cannot_hold_become_null_and_are_counted():
    assert number_value(0.25) == ({"N": "0.25"}, False)
    assert number_value(7) == ({"N": "7"}, False)
    assert number_value(None) == ({"NULL": True}, False)
    for bad in (math.nan, math.inf, -math.inf, 1e200, 1e-200):
        assert number_value(bad) == ({"NULL": True}, True)
    assert float(number_value(0.1 + 0.2)[0]["N"]) == 0.1 + 0.2  # the double survives exactly


def test_item_size_matches_a_hand_count():
    item = {"pk": {"S": "U#é"}, "n": {"N": "12.5"}, "l": {"L": [{"S": "ab"}, {"NULL": True}]}}
    # pk: 2 + 4 bytes (é is 2 bytes); n: 1 + (4 + 1); l: 1 + 3 + (2 + 1) + (1 + 1)
    assert item_size(item) == 6 + 6 + 9


def test_build_item_orders_by_rank_and_trims_the_tail_to_the_size_limit():
    view = items_model.VIEWS["recommendations"]
    row = {"pk": "U#u1", "sk": "RECS#s", "user_id": "u1", "solution": "s", "solution_version": "v",
           "recipe": "r", "run_date": "2026-11-20",
           "entries": [{"rank": r, "item_id": f"item-{r:02d}", "score": 1.0 / r, "reason": "x" * 50}
                       for r in (3, 1, 2, 5, 4)]}
    stamp = Stamp(GENERATED_AT, "ttl", TTL)
    full = build_item(row, view, stamp)
    assert [v["S"] for v in full.item["item_ids"]["L"]] == ["item-01", "item-02", "item-03", "item-04", "item-05"]
    assert full.trimmed_entries == 0 and full.size == item_size(full.item)
    limit = full.size - 1  # one byte too many: exactly the last entry goes
    trimmed = build_item(row, view, stamp, max_bytes=limit)
    assert trimmed.trimmed_entries == 1
    assert [v["S"] for v in trimmed.item["item_ids"]["L"]] == ["item-01", "item-02", "item-03", "item-04"]
    assert len(trimmed.item["scores"]["L"]) == len(trimmed.item["reasons"]["L"]) == 4
    assert item_size(trimmed.item) <= limit
    with pytest.raises(items_model.ItemTooLarge):
        build_item(row, view, stamp, max_bytes=50)


def test_user_segments_are_ordered_by_score_with_nulls_last():
    view = items_model.VIEWS["user_segments"]
    row = {"pk": "U#u", "sk": "SEGS#s", "user_id": "u", "solution": "s", "solution_version": "v", "recipe": "r",
           "run_date": "2026-11-20",
           "entries": [{"segment_id": "b", "rank": 4, "score": 0.5}, {"segment_id": "a", "rank": 9, "score": None},
                       {"segment_id": "c", "rank": 1, "score": 0.9}, {"segment_id": "a2", "rank": 2, "score": 0.5}]}
    item = plain_item(build_item(row, view, Stamp(GENERATED_AT)).item)
    assert item["segment_ids"] == ["c", "a2", "b", "a"]
    assert item["ranks"] == [1, 2, 4, 9]
    assert "ttl" not in item  # ttl_epoch 0: no TTL attribute


def test_token_bucket_holds_the_rate():
    clock = [0.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        clock[0] += seconds

    bucket = TokenBucket(50.0, clock=lambda: clock[0], sleep=sleep)
    for _ in range(20):
        bucket.take(25)  # 500 units at 50/s with a 50-unit burst: at least 9 s
    assert clock[0] == pytest.approx((20 * 25 - 50) / 50.0)
    assert TokenBucket(0.0).take(10**6) == 0.0  # 0 = no limit


def test_backoff_is_exponential_with_full_jitter_and_capped():
    assert backoff_seconds(0, 0.05, 5.0, rand=lambda: 1.0) == pytest.approx(0.05)
    assert backoff_seconds(3, 0.05, 5.0, rand=lambda: 1.0) == pytest.approx(0.4)
    assert backoff_seconds(20, 0.05, 5.0, rand=lambda: 1.0) == 5.0
    assert backoff_seconds(3, 0.05, 5.0, rand=lambda: 0.0) == 0.0


@pytest.mark.parametrize("key, value, message", [
    ("write_rate_unit", "bytes", "write_rate_unit"),
    ("write_rate", -1.0, "write_rate"),
    ("max_item_bytes", 500_000, "max_item_bytes"),
    ("segment_views", ("members", "pages"), "segment_views"),
    ("ttl_attribute", "scores", "ttl_attribute"),
    ("segment_page_size", 0, "segment_page_size"),
])
def test_bad_settings_are_config_errors(key, value, message):
    from batchrec.sinks.dynamodb import check_settings

    with pytest.raises(ConfigError, match=message):
        check_settings(dataclasses.replace(DynamoDBSettings(), **{key: value}), 7)


def test_base_toml_has_the_dynamodb_defaults():
    from batchrec.config import load_settings

    assert load_settings(conf_dir=REPO / "conf", environ={}).dynamodb == DynamoDBSettings()
    assert "[dynamodb]" in (REPO / "conf" / "base.toml").read_text()


def test_endpoint_credentials_are_redacted_for_logs():
    from batchrec.sinks.dynamodb_table import redact_url

    assert redact_url("https://key:secret@ddb.example:8000/x") == "https://ddb.example:8000/x"
    assert redact_url("http://127.0.0.1:4567") == "http://127.0.0.1:4567"
    assert redact_url(None) is None


def test_a_failed_call_to_an_endpoint_with_credentials_does_not_echo_them(monkeypatch):
    """botocore repeats the whole endpoint URL in its connection errors; the JobError must not."""
    from batchrec.sinks.dynamodb_table import describe_table, make_client

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")  # signed, so the call reaches the connection
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")

    endpoint = "http://user:s3cretpw@127.0.0.1:1"
    client = make_client(endpoint, "us-east-1", connect_timeout=0.5, read_timeout=0.5)
    with pytest.raises(JobError) as failure:
        describe_table(client, "abc", endpoint)
    message = str(failure.value)
    assert "s3cretpw" not in message and "user:" not in message
    assert "127.0.0.1:1" in message and "Could not connect" in message  # the failure is still named


def test_bad_table_name_is_a_usage_error_before_spark_starts(capsys):
    from batchrec.cli import main
    from batchrec.sinks.dynamodb_table import check_table_name

    for bad in ("ab", "has space", "x" * 256, "semi;colon"):
        with pytest.raises(UsageError, match="--table"):
            check_table_name(bad)
    assert main(["export-dynamodb", "--input", "nowhere", "--table", "ab"]) == 2
    assert "is not a DynamoDB table name" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# exports against the servers


def test_export_recommendations_end_to_end(spark, recs_path, server):
    table = new_table()
    summary = export(spark, recs_path, table, server.url, solution="sol-a")

    expected = expected_recs(_rows_a())
    client = client_for(server.url)
    assert scan(client, table) == expected
    assert summary["items"] == summary["acknowledged"] == summary["attempted"] == len(expected) == 32
    assert summary["rows"] == len(_rows_a()) and summary["missing"] == 0 and summary["verified"] == 32
    assert summary["table_created"] is True and summary["solutions"] == ["sol-a"]
    assert summary["shape"] == "recommendations" and summary["views"] == ["recommendations"]
    assert summary["retries"] == summary["throttles"] == summary["trimmed_items"] == 0
    assert summary["items_per_second"] > 0 and summary["ttl_epoch"] == TTL
    table_info = client.describe_table(TableName=table)["Table"]
    assert table_info["TableStatus"] == "ACTIVE"
    assert table_info["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    if server.name == "moto":
        assert summary["ttl"] == "enabled"
        ttl = client.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
        assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "ttl"}
    else:  # dynalite has no UpdateTimeToLive: a warning, the items still carry the attribute
        assert summary["ttl"] == "not supported by the endpoint"

    # Both solutions of the run (not the earlier run): sol-b's items sit beside sol-a's under the
    # same users' partition keys.
    summary = export(spark, recs_path, table, server.url, settings_with(verify_sample=5))
    both = {**expected, **expected_recs(_rows_b(), solution="sol-b", version="v7")}
    assert scan(client, table) == both
    assert summary["solutions"] == ["sol-a", "sol-b"] and summary["verified"] == 5
    assert summary["table_created"] is False and summary["items"] == 38


def test_rerun_replaces_items_and_never_duplicates(spark, tmp_path, dynalite_server):
    server = dynalite_server
    path = tmp_path / "recs"
    write_recs(spark, path, rec_rows(20, 6))
    table = new_table()
    client = client_for(server.url)
    export(spark, path, table, server.url)
    later = NOW + dt.timedelta(hours=5)
    export(spark, path, table, server.url, now=later)
    later_ttl = int(later.timestamp()) + TTL_DAYS * 86400
    assert scan(client, table) == expected_recs(rec_rows(20, 6), ttl=later_ttl,
                                                generated=later.strftime("%Y-%m-%dT%H:%M:%SZ"))

    # The same run recomputed with shorter lists and fewer users: lists are replaced whole (no
    # stale rank 6), users not in the new run keep their item until it expires.
    shorter = rec_rows(10, 4, seed=3)
    write_recs(spark, path, shorter, version="v2")
    export(spark, path, table, server.url, ttl_days=0)
    expected = expected_recs(rec_rows(20, 6), ttl=later_ttl, generated=later.strftime("%Y-%m-%dT%H:%M:%SZ"))
    expected.update(expected_recs(shorter, version="v2", ttl=0))
    assert scan(client, table) == expected


def test_throttling_and_unprocessed_items_are_retried_until_every_item_arrives(spark, recs_path, server,
                                                                               proxy_for):
    proxy = proxy_for(server, ["throttle", "partial", "pass", "partial", "throttle", "throttle", "partial"])
    table = new_table()

    summary = export(spark, recs_path, table, proxy.url, solution="sol-a")

    assert scan(client_for(server.url), table) == expected_recs(_rows_a())  # read from the server itself
    assert summary["acknowledged"] == summary["items"] == 32 and summary["missing"] == 0
    assert proxy.throttled > 0 and proxy.partial > 0
    assert summary["throttles"] == proxy.throttled
    assert summary["retries"] == proxy.throttled + proxy.partial
    assert summary["attempted"] == 32   # an item counts as attempted once, however often it is resent
    assert proxy.forwarded_items == 32  # and reaches the server exactly once


def test_items_still_unprocessed_at_the_deadline_fail_the_export(spark, recs_path, moto_server, proxy_for):
    from batchrec.sinks.dynamodb import ExportIncomplete

    proxy = proxy_for(moto_server, ["throttle"])
    table = new_table()
    with pytest.raises(ExportIncomplete, match="6 of 6 items were not acknowledged") as err:
        export(spark, recs_path, table, proxy.url, settings_with(retry_deadline_seconds=0.3), solution="sol-b")
    summary = err.value.summary
    assert summary["acknowledged"] == 0 and summary["missing"] == summary["abandoned"] == 6
    assert summary["throttles"] >= 2
    assert scan(client_for(moto_server.url), table) == {}
    # Nothing was lost for good: the same export once the throttling stops completes the table.
    proxy.set_plan(["pass"])
    export(spark, recs_path, table, proxy.url, solution="sol-b")
    assert scan(client_for(moto_server.url), table) == expected_recs(_rows_b(), solution="sol-b", version="v7")


def test_an_error_retrying_cannot_fix_fails_the_export_at_once(spark, recs_path, moto_server, proxy_for):
    proxy = proxy_for(moto_server, ["invalid"])
    table = new_table()
    with pytest.raises(JobError, match=f"BatchWriteItem on table {table} failed: ValidationException: "
                                       f"One or more parameter values were invalid"):
        export(spark, recs_path, table, proxy.url, settings_with(writers=1), solution="sol-b")
    assert proxy.batch_requests == 1   # one writer task, one batch of 6 items, no retry


def test_read_back_catches_writes_acknowledged_but_not_stored(spark, recs_path, dynalite_server, proxy_for):
    from batchrec.sinks.dynamodb import ExportIncomplete

    proxy = proxy_for(dynalite_server, ["pass", "drop"])
    with pytest.raises(ExportIncomplete, match="read back") as err:
        export(spark, recs_path, new_table(), proxy.url, settings_with(writers=1), solution="sol-a")
    summary = err.value.summary
    assert summary["acknowledged"] == 32 and summary["missing"] == 0     # the server claimed success
    assert summary["verify_failures"] == proxy.dropped_items == 7


def test_size_guard_trims_lists_so_items_fit(spark, tmp_path, server):
    # 25 entries with 20 KB reasons: 500 KB, over DynamoDB's 400 KB; the servers would reject it.
    big = [("big-user", r, f"i{r:02d}", 1.0 - r / 100, chr(ord("a") + r % 26) * 20_000) for r in range(1, 26)]
    small = rec_rows(5, 3)
    path = tmp_path / "recs"
    write_recs(spark, path, big + small)
    table = new_table()
    summary = export(spark, path, table, server.url)
    stored = scan(client_for(server.url), table)
    expected = expected_recs(big + small)
    kept = stored[("U#big-user", "RECS#sol-a")]
    full = expected[("U#big-user", "RECS#sol-a")]
    n = len(kept["item_ids"])
    assert 15 <= n < 25                                    # about 400 KB / 20 KB entries kept
    assert kept["item_ids"] == full["item_ids"][:n]        # the best ranks are kept
    assert kept["reasons"] == full["reasons"][:n] and kept["scores"] == full["scores"][:n]
    assert summary["trimmed_items"] == 1 and summary["trimmed_entries"] == 25 - n
    assert summary["missing"] == 0
    assert {k: v for k, v in stored.items() if k[0] != "U#big-user"} == \
        {k: v for k, v in expected.items() if k[0] != "U#big-user"}


def test_write_budget_limits_the_rate_and_long_exports_report_progress(spark, recs_path, moto_server):
    import logging

    lines = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = logging.getLogger("batchrec.sinks.dynamodb")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        started = time.perf_counter()
        summary = export(spark, recs_path, new_table(), moto_server.url,
                         settings_with(write_rate=8.0, write_rate_unit="items", verify_sample=0,
                                       progress_seconds=0.5), solution="sol-a")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    # 32 items at 8 items/s shared by 2 tasks (4/s each, 1 s of burst each): at least 3 s.
    assert time.perf_counter() - started >= 3.0
    assert summary["write_seconds"] >= 3.0 and summary["acknowledged"] == 32
    progress = [line for line in lines if line.startswith("export progress:")]
    assert len(progress) >= 3 and "tasks done, 32 items to write" in progress[-1]
    assert any(line.startswith("summary command=export-dynamodb") and "acknowledged=32" in line for line in lines)


def test_segments_export_pages_by_segment_and_lists_per_user(spark, tmp_path, server):
    rows = ([("s1", "item-9", r, f"u{r}", round(1 - r / 10, 3)) for r in range(1, 8)]
            + [("s#2", '{"genre": "jazz"}', 1, "u2", 0.95), ("s#2", '{"genre": "jazz"}', 2, "u8", 0.5),
               ("s#2", '{"genre": "jazz"}', 3, "u9", None)])
    ddl = ("segment_id string, query string, rank int, user_id string, score double")
    frame = [(RUN, "seg", "v3", "item-affinity") + r for r in rows]
    path = tmp_path / "segments"
    write_shape(spark, path, frame, "run_date date, solution string, solution_version string, recipe string, "
                + ddl, solution="seg")
    table = new_table("segs")
    summary = export(spark, path, table, server.url, settings_with(segment_page_size=3))

    run = {"solution": "seg", "solution_version": "v3", "recipe": "item-affinity", "run_date": RUN.isoformat(),
           "generated_at": GENERATED_AT, "ttl": TTL}
    expected = {}

    def page(segment, pk, query, n, pages, number, members):
        expected[(pk, f"P#{number:06d}")] = {
            "pk": pk, "sk": f"P#{number:06d}", "kind": "segment_members", "segment_id": segment, "query": query,
            "page": number, "first_rank": members[0][0], "members": n, "pages": pages,
            "user_ids": [m[1] for m in members], "scores": [m[2] for m in members], **run}

    s1 = [(r, f"u{r}", round(1 - r / 10, 3)) for r in range(1, 8)]
    page("s1", "SEG#seg#s1", "item-9", 7, 3, 0, s1[0:3])
    page("s1", "SEG#seg#s1", "item-9", 7, 3, 1, s1[3:6])
    page("s1", "SEG#seg#s1", "item-9", 7, 3, 2, s1[6:7])
    page("s#2", "SEG#seg#s%232", '{"genre": "jazz"}', 3, 1, 0, [(1, "u2", 0.95), (2, "u8", 0.5), (3, "u9", None)])
    memberships = {}
    for segment, _, rank, user, score in rows:
        memberships.setdefault(user, []).append((segment, rank, score))
    for user, segments in memberships.items():
        segments.sort(key=lambda s: (s[2] is None, -(s[2] or 0), s[0]))
        expected[(f"U#{user}", "SEGS#seg")] = {
            "pk": f"U#{user}", "sk": "SEGS#seg", "kind": "user_segments", "user_id": user,
            "segment_ids": [s[0] for s in segments], "ranks": [s[1] for s in segments],
            "scores": [s[2] for s in segments], **run}

    assert scan(client_for(server.url), table) == expected
    assert expected[("U#u2", "SEGS#seg")]["segment_ids"] == ["s#2", "s1"]
    assert summary["views"] == ["segment_members", "user_segments"] and summary["shape"] == "segments"
    assert summary["items"] == summary["acknowledged"] == 4 + 9 and summary["rows"] == 10


def test_related_items_export(spark, tmp_path, moto_server):
    rows = [(RUN, "sims", "v1", "sims", f"i{i}", r, f"i{(i + r) % 9}", round(0.9 - r / 10, 2), "model")
            for i in range(6) for r in range(1, 4)]
    path = tmp_path / "related"
    write_shape(spark, path, rows, "run_date date, solution string, solution_version string, recipe string, "
                "item_id string, rank int, related_item_id string, score double, reason string", solution="sims")
    table = new_table("related")
    summary = export(spark, path, table, moto_server.url, shape="related")
    expected = {}
    for i in range(6):
        entries = [r for r in rows if r[4] == f"i{i}"]
        expected[(f"I#i{i}", "RELATED#sims")] = {
            "pk": f"I#i{i}", "sk": "RELATED#sims", "kind": "related", "item_id": f"i{i}", "solution": "sims",
            "solution_version": "v1", "recipe": "sims", "run_date": RUN.isoformat(), "generated_at": GENERATED_AT,
            "ttl": TTL, "related_item_ids": [e[6] for e in entries], "scores": [e[7] for e in entries],
            "reasons": ["model"] * 3}
    assert scan(client_for(moto_server.url), table) == expected
    assert summary["items"] == 6 and summary["shape"] == "related"


def test_a_batch_job_exports_the_run_it_committed(spark, tmp_path, moto_server):
    """``recommend --dynamodb-table``: the store receives exactly the rows of the Delta commit, under
    the solution's canonical key, with a TTL counted from the export time."""
    from batchrec import registry
    from batchrec.commands import recommend
    from batchrec.config import RecommendSettings
    from batchrec.recipes import TrainedModel
    from test_recommend import artifacts

    seen = tmp_path / "interactions.csv"
    seen.write_text("USER_ID,ITEM_ID,TIMESTAMP\nu1,a,1700000000\nu3,c,1700000000\n")
    solution = str(tmp_path / "solution")
    model = TrainedModel(recipe=RECIPE, params={}, artifacts=artifacts(spark), stats={})
    registry.save_version(spark, solution, model, {"datasets": {"interactions": str(seen), "format": "csv"}})
    settings = dataclasses.replace(settings_with(endpoint_url=moto_server.url, region=REGION),
                                   recommend=RecommendSettings(num_results=3))
    table, output = new_table(), tmp_path / "recs"
    started = time.time()
    summary = recommend.run(spark, settings, RUN, solution=solution, output=str(output), dynamodb_table=table)
    rows = [(r.user_id, r.rank, r.item_id, r.score, r.reason)
            for r in spark.read.format("delta").load(str(output)).collect()]
    assert len(rows) == 4 * 3 and not any(r[0] == "u1" and r[2] == "a" for r in rows)  # seen pair left out
    expected = expected_recs(rows, solution=summary["solution"], version=summary["version"], ttl=None)
    got = scan(client_for(moto_server.url), table)
    for item in got.values():
        generated = dt.datetime.strptime(item.pop("generated_at"), "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=dt.timezone.utc).timestamp()
        assert started - 1 <= generated <= time.time() + 1
        assert item.pop("ttl") == pytest.approx(generated + DynamoDBSettings().ttl_days * 86400, abs=1)
    for item in expected.values():
        del item["generated_at"]
    assert got == expected
    assert summary["solution"].startswith("file:")  # the canonical, qualified key
    assert summary["dynamodb"]["items"] == summary["dynamodb"]["acknowledged"] == 4


def test_export_killed_halfway_then_run_again_ends_with_the_exact_table(spark, recs_path, dynalite_server,
                                                                        proxy_for, tmp_path):
    proxy = proxy_for(dynalite_server, ["pass"])
    table = new_table()
    # One writer at 5 items/s: the first batch of 25 goes out after about 4 s, the last 7 items
    # about 1.4 s later; the process is killed as soon as the first batch reaches the server.
    command = [sys.executable, "-m", "batchrec.cli", "export-dynamodb", "--input", str(recs_path),
               "--table", table, "--solution", "sol-a", "--endpoint-url", proxy.url, "--region", REGION,
               "--run-date", RUN.isoformat(), "--master", "local[1]", "--writers", "1", "--write-rate", "5"]
    env = child_environment({"BATCHREC_DYNAMODB__WRITE_RATE_UNIT": "items",
                             "BATCHREC_DYNAMODB__PROGRESS_SECONDS": "0"})
    with open(tmp_path / "killed.log", "wb") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            deadline = time.monotonic() + 400
            while proxy.forwarded_items < 25 and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            os.killpg(process.pid, signal.SIGKILL)  # the driver, its JVM and the Python workers
            process.wait(30)
    assert proxy.forwarded_items == 25, (tmp_path / "killed.log").read_text()[-3000:]
    client = client_for(dynalite_server.url)
    assert len(scan(client, table)) == 25         # killed halfway: the first batch is there

    summary = export(spark, recs_path, table, dynalite_server.url, solution="sol-a")
    assert scan(client, table) == expected_recs(_rows_a())
    assert summary["acknowledged"] == 32 and summary["table_created"] is False


def test_export_solution_spellings_name_the_key_batch_jobs_write(spark, moto_server, tmp_path):
    """Batch jobs key rows by the qualified solution URI; --solution DIR, DIR/ or file://DIR finds them."""
    from batchrec.commands import export_dynamodb
    from batchrec.locations import qualify

    solution_dir = tmp_path / "solution"
    key = qualify(spark, str(solution_dir))
    assert key.startswith("file:/")
    path = tmp_path / "recs"
    rows = rec_rows(4, 2, seed=3)
    write_recs(spark, path, rows, solution=key)
    client = client_for(moto_server.url)
    for spelling in (str(solution_dir), f"{solution_dir}/", f"file://{solution_dir}"):
        table = new_table()
        summary = export_dynamodb.run(spark, settings_with(), RUN, input=str(path), table=table,
                                      endpoint_url=moto_server.url, region=REGION, solution=spelling)
        assert summary["acknowledged"] == 4, spelling
        assert {item["solution"] for item in scan(client, table).values()} == {key}


def test_secrets_in_the_environment_never_reach_the_output(spark, recs_path, moto_server):
    path = recs_path
    secret = f"batchrec-secret-{uuid.uuid4().hex}"
    table = new_table()
    env = child_environment({"AWS_SECRET_ACCESS_KEY": secret, "AWS_SESSION_TOKEN": secret + "-token"})
    result = subprocess.run(
        [sys.executable, "-m", "batchrec.cli", "export-dynamodb", "--input", str(path), "--table", table,
         "--endpoint-url", moto_server.url, "--region", REGION, "--run-date", RUN.isoformat(),
         "--solution", "sol-b", "--master", "local[1]", "--log-level", "DEBUG"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert secret not in output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["acknowledged"] == 6 and summary["missing"] == 0
    assert "summary command=export-dynamodb" in result.stderr   # the log line


def test_cli_prints_the_summary_and_exits_1_when_items_are_missing(spark, recs_path, moto_server, proxy_for,
                                                                   monkeypatch, capsys):
    from batchrec.cli import main

    path = recs_path
    proxy = proxy_for(moto_server, ["throttle"])
    monkeypatch.setenv("BATCHREC_DYNAMODB__RETRY_DEADLINE_SECONDS", "0.2")
    monkeypatch.setenv("BATCHREC_DYNAMODB__PROGRESS_SECONDS", "0")
    partitions = spark.conf.get("spark.sql.shuffle.partitions")
    try:
        code = main(["export-dynamodb", "--input", str(path), "--table", new_table(), "--endpoint-url", proxy.url,
                     "--region", REGION, "--run-date", RUN.isoformat(), "--solution", "sol-b"])
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", partitions)  # the CLI applied conf/base.toml's
    captured = capsys.readouterr()
    assert code == 1
    assert json.loads(captured.out.strip().splitlines()[-1])["missing"] == 6
    assert "6 of 6 items were not acknowledged" in captured.err


# ---------------------------------------------------------------------------------------------
# bad input


def test_missing_delta_table_is_a_data_error(spark, tmp_path, moto_server):
    with pytest.raises(DataError, match="not a readable Delta table"):
        export(spark, tmp_path / "nothing-here", new_table(), moto_server.url)


def test_no_rows_for_the_run_date_names_the_dates_there_are(spark, recs_path, moto_server):
    with pytest.raises(DataError, match=r"no rows for run_date 2026-11-18; latest run dates in the table: "
                                        r"2026-11-20, 2026-11-19"):
        export(spark, recs_path, new_table(), moto_server.url, run_date=dt.date(2026, 11, 18))
    with pytest.raises(DataError, match=r"solution 'nope'.*solutions on 2026-11-20: sol-a, sol-b"):
        export(spark, recs_path, new_table(), moto_server.url, solution="nope")


def test_a_table_of_no_known_shape_is_a_data_error(spark, tmp_path, recs_path, moto_server):
    path = tmp_path / "odd"
    spark.createDataFrame([(RUN, "x")], "run_date date, thing string").write.format("delta").save(str(path))
    with pytest.raises(DataError, match="fit none of the batch output shapes"):
        export(spark, path, new_table(), moto_server.url)
    with pytest.raises(DataError, match="a related table needs the columns related_item_id"):
        export(spark, recs_path, new_table(), moto_server.url, shape="related")


def test_null_ids_and_too_long_keys_are_data_errors(spark, tmp_path, dynalite_server):
    path = tmp_path / "recs"
    ddl = ("run_date date, solution string, solution_version string, recipe string, user_id string, rank int, "
           "item_id string, score double, reason string")
    rows = [(RUN, "nulls", "v1", RECIPE, user, 1, "i1", 0.5, "model") for user in ("u1", None, "u2")]
    rows += [(RUN, "long", "v1", RECIPE, "u" * 3000, 1, "i1", 0.5, "model")]
    spark.createDataFrame(rows, ddl).write.format("delta").partitionBy("run_date").save(str(path))
    with pytest.raises(DataError, match="1 rows with a null user_id on 2026-11-20"):
        export(spark, path, new_table(), dynalite_server.url, solution="nulls")
    with pytest.raises(DataError, match="key pk .* is 3002 bytes; DynamoDB allows 2048"):
        export(spark, path, new_table(), dynalite_server.url, solution="long")


def test_an_older_run_is_refused_unless_allowed(spark, recs_path, moto_server):
    table = new_table()
    with pytest.raises(UsageError, match="later runs of the same solutions \\(sol-a 2026-11-20\\)"):
        export(spark, recs_path, table, moto_server.url, run_date=EARLIER)
    summary = export(spark, recs_path, table, moto_server.url, run_date=EARLIER, allow_older_run=True)
    assert summary["acknowledged"] == 12


def test_missing_table_with_no_create_table_and_wrong_key_schema(spark, recs_path, server):
    with pytest.raises(JobError, match="does not exist .*drop --no-create-table"):
        export(spark, recs_path, new_table(), server.url, create_table=False)
    client = client_for(server.url)
    other = new_table("other")
    client.create_table(TableName=other, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                        BillingMode="PAY_PER_REQUEST")
    with pytest.raises(JobError, match="has the key id HASH \\(S\\); the export needs pk HASH"):
        export(spark, recs_path, other, server.url)


def test_unreachable_endpoint_is_a_job_error(spark, recs_path):
    from dynamo_servers import free_port

    with pytest.raises(JobError, match="DescribeTable .* at http://127.0.0.1"):
        export(spark, recs_path, new_table(), f"http://127.0.0.1:{free_port()}",
               settings_with(connect_timeout_seconds=1.0))


def test_new_table_is_waited_for_until_active(tmp_path):
    from batchrec.sinks.dynamodb_table import ensure_table

    server = start_dynalite(tmp_path, create_table_ms=2000)  # new tables stay CREATING for 2 s
    try:
        client = client_for(server.url)
        table = new_table()
        started = time.monotonic()
        outcome = ensure_table(client, table, create=True, ttl_attribute="ttl", wait_seconds=30, endpoint=server.url)
        assert outcome == {"table_created": True, "ttl": "not supported by the endpoint"}
        assert time.monotonic() - started >= 1.5
        assert client.describe_table(TableName=table)["Table"]["TableStatus"] == "ACTIVE"
        # A table another process is still creating is waited for as well.
        racing = new_table()
        client.create_table(TableName=racing, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                                         {"AttributeName": "sk", "KeyType": "RANGE"}],
                            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                                  {"AttributeName": "sk", "AttributeType": "S"}],
                            BillingMode="PAY_PER_REQUEST")
        assert client.describe_table(TableName=racing)["Table"]["TableStatus"] == "CREATING"
        assert ensure_table(client, racing, create=True, ttl_attribute=None, wait_seconds=30,
                            endpoint=server.url) == {"table_created": False, "ttl": "off"}
        assert client.describe_table(TableName=racing)["Table"]["TableStatus"] == "ACTIVE"
        # Not ACTIVE in time: a JobError naming the table's status.
        slow = new_table()
        with pytest.raises(JobError, match=f"table {slow} is CREATING, not ACTIVE, after 0 s"):
            ensure_table(client, slow, create=True, ttl_attribute=None, wait_seconds=0.2, endpoint=server.url)
    finally:
        server.stop()


def test_spark_submit_entry_passes_the_exit_code_through():
    env = {**os.environ, "MASTER": "local[1]"}
    result = subprocess.run([str(REPO / "spark-submit.sh"), "export_dynamodb", "--input", "nowhere", "--table", "ab"],
                            capture_output=True, text=True, env=env, timeout=600, cwd=REPO)
    assert result.returncode == 2
    assert "is not a DynamoDB table name" in result.stdout + result.stderr
