"""DynamoDB clients and the export table: name check, creation, waiting for ACTIVE, TTL.

Credentials come only from boto3's standard chain (environment variables, shared credentials and
config files, container or instance roles); batchrec never reads, stores or logs them. The
endpoint and region can be given (``--endpoint-url``, ``--region``) to reach a DynamoDB-compatible
store such as ScyllaDB Alternator, moto's server or dynalite.
"""

from __future__ import annotations

import logging
import re
import time
import urllib.parse
from typing import Optional

from batchrec.errors import JobError, UsageError
from batchrec.sinks.dynamodb_items import PK, SK

log = logging.getLogger(__name__)

TABLE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
ACTIVE = "ACTIVE"
PAY_PER_REQUEST = "PAY_PER_REQUEST"
POLL_FIRST_SECONDS = 0.1
POLL_MAX_SECONDS = 5.0
# TTL outcomes reported in the summary.
TTL_ENABLED = "enabled"
TTL_ALREADY = "already enabled"
TTL_OFF = "off"
TTL_UNSUPPORTED = "not supported by the endpoint"


def check_table_name(name: str) -> str:
    """``name`` if DynamoDB accepts it as a table name.

    Raises:
        UsageError: not 3 to 255 characters of letters, digits, ``_``, ``-`` and ``.``.
    """
    if not TABLE_NAME_PATTERN.match(name or ""):
        raise UsageError(f"--table {name!r} is not a DynamoDB table name; expected 3 to 255 characters "
                         f"of letters, digits, '_', '-' and '.'")
    return name


def redact_url(url: Optional[str]) -> Optional[str]:
    """``url`` without any user:password part, fit for logs."""
    if not url:
        return url
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


# "scheme://user:password@host": the user-info part of any URL inside a message.
_URL_USER_INFO = re.compile(r"(?<=://)[^/\s@\"']+@")


def redact_text(text: str) -> str:
    """``text`` with the user-info part of every URL in it removed (botocore repeats the endpoint
    URL, credentials included, in its own messages)."""
    return _URL_USER_INFO.sub("", text)


def make_client(endpoint_url: Optional[str], region: Optional[str], connect_timeout: float = 10.0,
                read_timeout: float = 30.0, max_pool_connections: int = 4):
    """A DynamoDB client from a fresh boto3 session (sessions are not thread-safe; clients are).

    botocore's own retries are switched off: the writer retries throttled calls and
    ``UnprocessedItems`` itself, with its own deadline, and counts them.

    Raises:
        UsageError: no region given and none configured for boto3.
    """
    import boto3
    from botocore.config import Config
    from botocore.exceptions import NoRegionError

    config = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=connect_timeout,
                    read_timeout=read_timeout, max_pool_connections=max_pool_connections)
    try:
        return boto3.session.Session().client("dynamodb", endpoint_url=endpoint_url or None,
                                              region_name=region or None, config=config)
    except NoRegionError as exc:
        raise UsageError("no AWS region: pass --region, set [dynamodb] region, or set AWS_REGION") from exc


def error_code(exc: BaseException) -> str:
    """The DynamoDB error code of a botocore ClientError ('' for anything else)."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def describe_failure(exc: BaseException) -> str:
    """One line naming a boto3 failure without the request's headers (which carry the signature)."""
    response = getattr(exc, "response", None)
    if response:
        error = response.get("Error", {})
        return redact_text(f"{error.get('Code', type(exc).__name__)}: {error.get('Message', '')}".strip())
    return redact_text(f"{type(exc).__name__}: {exc}")


def driver_call(what: str, endpoint: Optional[str], func, *args, **kwargs):
    """Run one admin call on the driver, turning connection and credential failures into JobError."""
    from botocore.exceptions import BotoCoreError, NoCredentialsError

    try:
        return func(*args, **kwargs)
    except NoCredentialsError as exc:
        raise JobError(f"{what}: no AWS credentials found by boto3's standard chain (environment, "
                       f"shared credentials file, instance or container role)") from exc
    except BotoCoreError as exc:
        raise JobError(f"{what} at {redact_url(endpoint) or 'AWS'}: {describe_failure(exc)}") from exc


def describe_table(client, table: str, endpoint: Optional[str]) -> Optional[dict]:
    """DescribeTable's ``Table``, or None when the table does not exist."""
    from botocore.exceptions import ClientError

    try:
        return driver_call(f"DescribeTable {table}", endpoint, client.describe_table, TableName=table)["Table"]
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return None
        raise JobError(f"DescribeTable {table} at {redact_url(endpoint) or 'AWS'}: {describe_failure(exc)}") from exc


def check_key_schema(description: dict, table: str) -> None:
    """The table must have the export's key: ``pk`` (String, HASH) and ``sk`` (String, RANGE).

    Raises:
        JobError: it has another key.
    """
    keys = {k["AttributeName"]: k["KeyType"] for k in description.get("KeySchema", [])}
    types = {a["AttributeName"]: a["AttributeType"] for a in description.get("AttributeDefinitions", [])}
    if keys != {PK: "HASH", SK: "RANGE"} or types.get(PK) != "S" or types.get(SK) != "S":
        found = ", ".join(f"{name} {kind} ({types.get(name, '?')})" for name, kind in keys.items())
        raise JobError(f"table {table} has the key {found}; the export needs {PK} HASH (S) and {SK} RANGE (S). "
                       f"Use another --table or let the export create one")


def create_table(client, table: str, endpoint: Optional[str]) -> bool:
    """Create the table (on-demand capacity); False when someone else created it meanwhile."""
    from botocore.exceptions import ClientError

    try:
        driver_call(f"CreateTable {table}", endpoint, client.create_table, TableName=table,
                    KeySchema=[{"AttributeName": PK, "KeyType": "HASH"}, {"AttributeName": SK, "KeyType": "RANGE"}],
                    AttributeDefinitions=[{"AttributeName": PK, "AttributeType": "S"},
                                          {"AttributeName": SK, "AttributeType": "S"}],
                    BillingMode=PAY_PER_REQUEST)
    except ClientError as exc:
        if error_code(exc) == "ResourceInUseException":
            return False
        raise JobError(f"CreateTable {table} at {redact_url(endpoint) or 'AWS'}: {describe_failure(exc)}") from exc
    log.info("created table %s (on-demand capacity)", table)
    return True


def wait_active(client, table: str, endpoint: Optional[str], timeout: float) -> dict:
    """Poll DescribeTable until the table is ACTIVE (new tables pass through CREATING).

    Raises:
        JobError: not ACTIVE within ``timeout`` seconds, or gone.
    """
    deadline = time.monotonic() + timeout
    pause = POLL_FIRST_SECONDS
    while True:
        description = describe_table(client, table, endpoint)
        status = description.get("TableStatus") if description else None
        if status == ACTIVE:
            return description
        if time.monotonic() + pause > deadline:
            raise JobError(f"table {table} is {status or 'missing'}, not {ACTIVE}, after {timeout:.0f} s; "
                           f"retry later or raise [dynamodb] table_wait_seconds")
        log.info("table %s is %s; waiting", table, status)
        time.sleep(pause)
        pause = min(pause * 2, POLL_MAX_SECONDS)


def enable_ttl(client, table: str, attribute: str, endpoint: Optional[str]) -> str:
    """Turn on TTL on ``attribute``; returns one of the ``TTL_*`` outcomes.

    Stores without TTL (dynalite) answer ``UnknownOperationException``: the items still carry the
    attribute and readers still filter on it, so that is a warning, not a failure.
    """
    from botocore.exceptions import ClientError

    try:
        current = driver_call(f"DescribeTimeToLive {table}", endpoint, client.describe_time_to_live,
                              TableName=table)["TimeToLiveDescription"]
        if current.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
            if current.get("AttributeName") != attribute:
                log.warning("table %s expires items by %r, not by %r: items written now will not expire by TTL",
                            table, current.get("AttributeName"), attribute)
            return TTL_ALREADY
        driver_call(f"UpdateTimeToLive {table}", endpoint, client.update_time_to_live, TableName=table,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute})
        return TTL_ENABLED
    except ClientError as exc:
        if error_code(exc) in ("UnknownOperationException", "UnrecognizedClientException", "NotImplemented"):
            log.warning("the endpoint does not support TTL (%s); items carry %r but will not expire by themselves",
                        describe_failure(exc), attribute)
            return TTL_UNSUPPORTED
        raise JobError(f"enabling TTL on table {table}: {describe_failure(exc)}") from exc


def ensure_table(client, table: str, *, create: bool, ttl_attribute: Optional[str], wait_seconds: float,
                 endpoint: Optional[str]) -> dict:
    """Make sure ``table`` exists with the export's key and is ACTIVE; create it unless ``create`` is off.

    Returns:
        ``{"table_created": bool, "ttl": <TTL outcome>}``.

    Raises:
        JobError: missing with ``create`` off, wrong key schema, not ACTIVE in time, endpoint errors.
    """
    description = describe_table(client, table, endpoint)
    created = False
    if description is None:
        if not create:
            raise JobError(f"table {table} does not exist at {redact_url(endpoint) or 'AWS'}; create it "
                           f"(key {PK} HASH S, {SK} RANGE S) or drop --no-create-table")
        created = create_table(client, table, endpoint)
    if description is None or description.get("TableStatus") != ACTIVE:
        description = wait_active(client, table, endpoint, wait_seconds)
    check_key_schema(description, table)
    ttl = enable_ttl(client, table, ttl_attribute, endpoint) if ttl_attribute else TTL_OFF
    return {"table_created": created, "ttl": ttl}
