"""The executor side of the DynamoDB export: one client per partition, batches of 25, retries, a rate budget.

:func:`write_partition` is handed to ``mapInArrow``: it receives one partition's grouped rows as
Arrow batches, builds one item per row (``dynamodb_items.build_item``), sends ``BatchWriteItem``
calls of at most 25 puts and yields a single row of counts, which the driver sums.

* ``UnprocessedItems`` and throttling errors (``ProvisionedThroughputExceededException``,
  ``ThrottlingException``, ``RequestLimitExceeded``, 5xx, dropped connections) are resent after an
  exponential backoff with full jitter (AWS's advice when many clients retry at once), until the
  batch's retry deadline. botocore's own retries are off, so every retry is counted here.
* When a batch misses its deadline the task stops sending and reports the rest as not
  acknowledged; the driver's reconciliation then fails the export (exit 1). Every write is a
  whole-item put on a deterministic key, so running the export again completes it.
* The rate budget is a token bucket per task holding this task's share of the global budget
  (items or write capacity units per second).
* Other errors (a missing table, a validation error) end the task at once: retrying cannot help.
"""

from __future__ import annotations

import itertools
import logging
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Optional

from batchrec.sinks.dynamodb_items import (BuiltItem, ItemTooLarge, Stamp, View, build_item, item_size,
                                           write_units)

log = logging.getLogger(__name__)

MAX_BATCH_ITEMS = 25
RATE_ITEMS = "items"
RATE_WCU = "wcu"
THROTTLING_CODES = frozenset({
    "ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
    "Throttling", "TooManyRequestsException",
})
TRANSIENT_CODES = frozenset({"InternalServerError", "ServiceUnavailable", "InternalFailure", "RequestTimeout"})
COUNT_FIELDS = ("items", "attempted", "acknowledged", "retries", "throttles", "trimmed_items",
                "trimmed_entries", "nulled_numbers", "oversized", "write_units", "requests", "abandoned")


class WriteError(RuntimeError):
    """A batch failed for a reason retrying cannot fix (the message names table and error code)."""


@dataclass(frozen=True)
class WriterConfig:
    """Everything a task needs (picklable; no credentials: executors use boto3's own chain)."""

    table: str
    endpoint_url: Optional[str]
    region: Optional[str]
    view: View
    stamp: Stamp
    rate_per_task: float = 0.0          # items or WCU per second for this task; 0 = no limit
    rate_unit: str = RATE_WCU
    retry_deadline_seconds: float = 120.0
    backoff_base_seconds: float = 0.05
    backoff_max_seconds: float = 5.0
    max_item_bytes: int = 400_000
    connect_timeout_seconds: float = 10.0
    read_timeout_seconds: float = 30.0
    progress_seconds: float = 30.0


@dataclass
class Counts:
    """What one task did; the driver adds them up over tasks."""

    items: int = 0              # items built from the rows (one per key)
    attempted: int = 0          # items sent at least once
    acknowledged: int = 0       # items DynamoDB confirmed (not returned as unprocessed)
    retries: int = 0            # resends: after UnprocessedItems or a retryable error
    throttles: int = 0          # throttling errors (whole call rejected)
    trimmed_items: int = 0      # items whose lists were shortened to fit the size limit
    trimmed_entries: int = 0    # list entries dropped by the size guard
    nulled_numbers: int = 0     # numbers DynamoDB cannot hold (NaN, inf, out of range), stored as NULL
    oversized: int = 0          # items too large even with empty lists (not written)
    write_units: int = 0        # estimated WCU of the acknowledged puts
    requests: int = 0           # BatchWriteItem calls answered
    abandoned: int = 0          # items not acknowledged when a retry deadline passed

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in COUNT_FIELDS}


class TokenBucket:
    """Allow ``rate`` units per second on average, with at most one second of burst."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self.tokens = rate
        self.updated = clock()

    def take(self, units: float) -> float:
        """Spend ``units``, sleeping first if the budget is in debt; returns the seconds slept."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        self.tokens = min(self.rate, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= units
        if self.tokens >= 0:
            return 0.0
        pause = -self.tokens / self.rate
        self.sleep(pause)
        return pause


def backoff_seconds(attempt: int, base: float, cap: float, rand: Callable[[], float] = random.random) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**attempt))."""
    return rand() * min(cap, base * (2 ** attempt))


@dataclass
class BatchWriter:
    """Buffers items and sends them in ``BatchWriteItem`` calls of at most 25."""

    client: object
    config: WriterConfig
    counts: Counts = field(default_factory=Counts)
    sleep: Callable[[float], None] = time.sleep
    buffer: list = field(default_factory=list)
    gave_up: bool = False

    def __post_init__(self):
        self.bucket = TokenBucket(self.config.rate_per_task, sleep=self.sleep)

    def add(self, built: BuiltItem) -> None:
        self.counts.items += 1
        self.counts.trimmed_entries += built.trimmed_entries
        self.counts.trimmed_items += built.trimmed_entries > 0
        self.counts.nulled_numbers += built.nulled_numbers
        self.buffer.append(built)
        if len(self.buffer) >= MAX_BATCH_ITEMS:
            self.flush()

    def flush(self) -> None:
        batch, self.buffer = self.buffer, []
        if not batch:
            return
        if self.gave_up:  # an earlier batch missed its deadline: stop loading a struggling table
            self.counts.abandoned += len(batch)
            return
        self.send(batch)

    def cost(self, sizes: Iterable[int]) -> float:
        if self.config.rate_unit == RATE_ITEMS:
            return float(sum(1 for _ in sizes))
        return float(sum(write_units(s) for s in sizes))

    def send(self, batch: list) -> None:
        """Write one batch, resending what comes back unprocessed or throttled until the deadline."""
        from botocore.exceptions import ClientError, ConnectionError as BotoConnectionError, HTTPClientError

        config = self.config
        deadline = time.monotonic() + config.retry_deadline_seconds
        pending = [{"PutRequest": {"Item": b.item}} for b in batch]
        self.counts.attempted += len(pending)
        attempt = 0
        while pending:
            sizes = [item_size(r["PutRequest"]["Item"]) for r in pending]
            self.bucket.take(self.cost(sizes))
            try:
                response = self.client.batch_write_item(RequestItems={config.table: pending},
                                                        ReturnConsumedCapacity="TOTAL")
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0
                if code in THROTTLING_CODES:
                    self.counts.throttles += 1
                elif code not in TRANSIENT_CODES and status < 500:
                    message = exc.response.get("Error", {}).get("Message", "")
                    raise WriteError(f"BatchWriteItem on table {config.table} failed: {code}: {message}") from exc
            except (BotoConnectionError, HTTPClientError):
                pass  # a dropped or timed-out connection: the puts may or may not have landed; resend
            else:
                self.counts.requests += 1
                unprocessed = response.get("UnprocessedItems", {}).get(config.table, [])
                self.counts.acknowledged += len(pending) - len(unprocessed)
                self.counts.write_units += (sum(write_units(s) for s in sizes)
                                            - sum(write_units(item_size(r["PutRequest"]["Item"]))
                                                  for r in unprocessed))
                pending = unprocessed
                if not pending:
                    return
            pause = backoff_seconds(attempt, config.backoff_base_seconds, config.backoff_max_seconds)
            if time.monotonic() + pause > deadline:
                self.counts.abandoned += len(pending)
                self.gave_up = True
                log.warning("table %s: %d items still unprocessed after the %.0f s retry deadline; giving up",
                            config.table, len(pending), config.retry_deadline_seconds)
                return
            self.counts.retries += 1
            attempt += 1
            self.sleep(pause)


def build_items(rows: Iterable[dict], config: WriterConfig, counts: Counts) -> Iterator[BuiltItem]:
    """Items for the rows; rows too large even with empty lists are counted, not written."""
    for row in rows:
        try:
            yield build_item(row, config.view, config.stamp, config.max_item_bytes)
        except ItemTooLarge as exc:
            counts.items += 1
            counts.oversized += 1
            log.warning("%s", exc)


def write_rows(rows: Iterable[dict], config: WriterConfig, client, partition: int = 0,
               sleep: Callable[[float], None] = time.sleep) -> Counts:
    """Write every row's item through ``client``; returns the counts (progress lines on stderr)."""
    writer = BatchWriter(client, config, sleep=sleep)
    started = last_report = time.monotonic()
    for built in build_items(rows, config, writer.counts):
        writer.add(built)
        now = time.monotonic()
        if config.progress_seconds and now - last_report >= config.progress_seconds:
            last_report = now
            done = writer.counts.acknowledged
            # Executors have no logging setup of batchrec's; stderr lands in the executor's log.
            print(f"batchrec export-dynamodb: table {config.table} view {config.view.name} partition {partition}: "
                  f"{done} items acknowledged, {done / (now - started):.0f} items/s, "
                  f"{writer.counts.retries} retries, {writer.counts.throttles} throttles",
                  file=sys.stderr, flush=True)
    writer.flush()
    return writer.counts


def write_partition(batches: Iterator, config: WriterConfig) -> Iterator:
    """``mapInArrow`` function: write one partition, yield one Arrow row of counts."""
    import pyarrow as pa
    from pyspark import TaskContext

    from batchrec.sinks.dynamodb_table import make_client

    context = TaskContext.get()
    partition = context.partitionId() if context else 0
    rows = (row for batch in batches for row in batch.to_pylist())
    first = next(rows, None)
    if first is None:  # an empty partition needs no client
        counts = Counts()
    else:
        client = make_client(config.endpoint_url, config.region, config.connect_timeout_seconds,
                             config.read_timeout_seconds)
        counts = write_rows(itertools.chain([first], rows), config, client, partition)
    values = {"partition": [partition], **{name: [value] for name, value in counts.as_dict().items()}}
    yield pa.RecordBatch.from_pydict(values, schema=counts_arrow_schema())


def counts_arrow_schema():
    import pyarrow as pa

    return pa.schema([("partition", pa.int32())] + [(name, pa.int64()) for name in COUNT_FIELDS])


def counts_ddl() -> str:
    """Spark DDL schema of :func:`write_partition`'s output."""
    return "partition int, " + ", ".join(f"{name} bigint" for name in COUNT_FIELDS)
