"""DynamoDB-compatible HTTP servers for the tests, and a fault-injecting proxy in front of them.

* ``moto``: moto's server mode (``python -m moto.server``), a child process on a free port.
* ``dynalite``: the npm package pinned in ``package.json``/``package-lock.json`` at the repository
  root, run by Node; ``npm ci`` installs it into ``node_modules`` when it is missing.

Both are real HTTP servers: the code under test reaches them through boto3 exactly as it reaches
AWS. Neither throttles nor ever returns ``UnprocessedItems``, so :class:`FaultProxy` sits between
the client and a server and, on a fixed schedule, answers ``BatchWriteItem`` calls with
``ProvisionedThroughputExceededException`` or forwards only part of a batch and returns the rest
as ``UnprocessedItems`` (what DynamoDB does under throttling), or acknowledges a batch without
storing it (a lying server, to prove the read-back check catches it).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
DYNALITE_CLI = REPO / "node_modules" / "dynalite" / "cli.js"
HOST = "127.0.0.1"
START_TIMEOUT_SECONDS = 60.0
# Every test table spends this long in CREATING on dynalite (its default is 500 ms).
DYNALITE_CREATE_TABLE_MS = 400
# Credentials for the local servers only; neither server checks them.
TEST_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_DEFAULT_REGION": "us-east-1"}
AMZ_JSON = "application/x-amz-json-1.0"
BATCH_WRITE_TARGET = "DynamoDB_20120810.BatchWriteItem"
INVALID_BODY = {"__type": "com.amazon.coral.validate#ValidationException",
                "message": "One or more parameter values were invalid: injected by the test proxy"}
THROTTLE_BODY = {
    "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
    "message": "The level of configured provisioned throughput for the table was exceeded. "
               "Consider increasing your provisioning level with the UpdateTable API.",
}


def free_port() -> int:
    """A TCP port nobody listens on right now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def ensure_dynalite() -> Path:
    """Install the pinned dynalite with ``npm ci`` unless ``node_modules`` already has it."""
    if DYNALITE_CLI.is_file():
        return DYNALITE_CLI
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise RuntimeError("dynalite needs Node 20+ and npm on PATH (see package.json)")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=REPO, check=True)
    if not DYNALITE_CLI.is_file():
        raise RuntimeError(f"npm ci did not install dynalite at {DYNALITE_CLI}")
    return DYNALITE_CLI


class LocalServer:
    """A DynamoDB-compatible server in a child process, listening on ``url`` until :meth:`stop`."""

    def __init__(self, name: str, command: Sequence[str], port: int, log_path: Path):
        self.name = name
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(list(command), stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, cwd=REPO)

    def wait_ready(self, timeout: float = START_TIMEOUT_SECONDS) -> "LocalServer":
        """Block until the server answers HTTP, or raise with its log when it died or timed out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}: {self.log()}")
            try:
                connection = http.client.HTTPConnection(HOST, self.port, timeout=2)
                connection.request("GET", "/")
                connection.getresponse().read()
                connection.close()
                return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer on {self.url} within {timeout} s: {self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()


def start_moto(log_dir: Path) -> LocalServer:
    """moto's server on a free port (``python -m moto.server``)."""
    last_error: Optional[Exception] = None
    for _ in range(3):  # the port may be taken between free_port() and the bind
        port = free_port()
        server = LocalServer("moto", [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
                             port, log_dir / f"moto-{port}.log")
        try:
            return server.wait_ready()
        except RuntimeError as exc:
            last_error = exc
    raise RuntimeError(f"moto server did not start: {last_error}")


def start_dynalite(log_dir: Path, create_table_ms: int = DYNALITE_CREATE_TABLE_MS) -> LocalServer:
    """dynalite (in memory) on a free port; new tables stay CREATING for ``create_table_ms``."""
    cli = ensure_dynalite()
    node = shutil.which("node") or "node"
    last_error: Optional[Exception] = None
    for _ in range(3):
        port = free_port()
        server = LocalServer("dynalite", [node, str(cli), "--host", HOST, "--port", str(port),
                                          "--createTableMs", str(create_table_ms)],
                             port, log_dir / f"dynalite-{port}.log")
        try:
            return server.wait_ready()
        except RuntimeError as exc:
            last_error = exc
    raise RuntimeError(f"dynalite did not start: {last_error}")


START = {"moto": start_moto, "dynalite": start_dynalite}


def child_environment(extra: Optional[dict] = None) -> dict:
    """``os.environ`` plus the local servers' dummy credentials (for child processes)."""
    env = dict(os.environ)
    env.update(TEST_CREDENTIALS)
    env.update(extra or {})
    return env


class FaultProxy:
    """An HTTP proxy in front of a server that injects DynamoDB's throttling answers.

    ``plan`` is a cycle of actions, one per ``BatchWriteItem`` request (other operations always
    pass through): ``"pass"`` forwards it; ``"throttle"`` answers HTTP 400
    ``ProvisionedThroughputExceededException`` without forwarding; ``"partial"`` forwards the first
    half of the requests and returns the other half as ``UnprocessedItems``; ``"drop"`` answers
    success without forwarding anything; ``"invalid"`` answers HTTP 400 ``ValidationException`` (an
    error no retry can fix). Counters record what was injected.
    """

    def __init__(self, target_url: str, plan: Sequence[str] = ("pass",)):
        unknown = set(plan) - {"pass", "throttle", "partial", "drop", "invalid"}
        if unknown:
            raise ValueError(f"unknown proxy actions {sorted(unknown)}")
        self.target = urllib.parse.urlsplit(target_url)
        self.plan = list(plan)
        self.lock = threading.Lock()
        self.batch_requests = 0
        self.throttled = 0
        self.partial = 0
        self.dropped_items = 0
        self.forwarded_items = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                proxy.handle(self, body)

            def do_GET(self):  # noqa: N802
                proxy.forward(self, b"")

            def log_message(self, *args):  # keep the test output quiet
                pass

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{HOST}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def set_plan(self, plan: Sequence[str]) -> None:
        with self.lock:
            self.plan = list(plan)

    def _next_action(self) -> str:
        with self.lock:
            action = self.plan[self.batch_requests % len(self.plan)]
            self.batch_requests += 1
            return action

    def handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        if handler.headers.get("X-Amz-Target") != BATCH_WRITE_TARGET:
            self.forward(handler, body)
            return
        action = self._next_action()
        request = json.loads(body)
        (table, writes), = request["RequestItems"].items()
        if action == "throttle":
            with self.lock:
                self.throttled += 1
            self.reply(handler, 400, THROTTLE_BODY)
        elif action == "invalid":
            self.reply(handler, 400, INVALID_BODY)
        elif action == "drop":
            with self.lock:
                self.dropped_items += len(writes)
            self.reply(handler, 200, {"UnprocessedItems": {}})
        elif action == "partial" and len(writes) > 1:
            keep, hold = writes[: len(writes) // 2], writes[len(writes) // 2:]
            request["RequestItems"] = {table: keep}
            status, payload = self.send(handler, json.dumps(request).encode())
            if status == 200:
                with self.lock:
                    self.partial += 1
                    self.forwarded_items += len(keep)
                answer = json.loads(payload)
                answer["UnprocessedItems"] = {table: hold}
                self.reply(handler, 200, answer)
            else:
                self.reply_raw(handler, status, payload)
        else:
            status, payload = self.send(handler, body)
            if status == 200:
                with self.lock:
                    self.forwarded_items += len(writes)
            self.reply_raw(handler, status, payload)

    def send(self, handler: BaseHTTPRequestHandler, body: bytes) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection(self.target.hostname, self.target.port, timeout=60)
        headers = {k: v for k, v in handler.headers.items()
                   if k.lower() not in ("host", "content-length", "connection")}
        headers["Content-Length"] = str(len(body))
        connection.request(handler.command, handler.path, body=body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        connection.close()
        return response.status, payload

    def forward(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        status, payload = self.send(handler, body)
        self.reply_raw(handler, status, payload)

    def reply(self, handler: BaseHTTPRequestHandler, status: int, answer: dict) -> None:
        self.reply_raw(handler, status, json.dumps(answer).encode())

    @staticmethod
    def reply_raw(handler: BaseHTTPRequestHandler, status: int, payload: bytes) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", AMZ_JSON)
        handler.send_header("Content-Length", str(len(payload)))
        # botocore checks this checksum on DynamoDB responses when it is present.
        handler.send_header("x-amz-crc32", str(zlib.crc32(payload) & 0xFFFFFFFF))
        handler.end_headers()
        handler.wfile.write(payload)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
