"""A real S3 server (moto's, over HTTP) and an HTTP front for it that breaks chosen requests.

Storage faults are tested against the real protocol and the real client (boto3 with the
service's timeouts and retries), not a patched method: the front forwards every request to the
moto server unless a rule matches it, and then answers 503, never answers (an S3 that accepts
connections and hangs), or forwards it and loses the answer (the write landed, the client never
hears so).
"""

from __future__ import annotations

import http.client
import socket
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import boto3
from moto.server import ThreadedMotoServer

S3_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
ACTIONS = ("error", "hang", "lose")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class MotoServer:
    """moto's S3 server in a thread of this process, on its own loopback port, empty: moto
    keeps its buckets in module state, shared by every server of the process, so it is reset."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/moto-api/reset", method="POST"))

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key in ``bucket`` under ``prefix`` (none when the bucket is missing)."""
        client = boto3.client("s3", endpoint_url=self.url, region_name="us-east-1", **_KEYS)
        if bucket not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
            return []
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def multipart_uploads(self, bucket: str) -> list[str]:
        client = boto3.client("s3", endpoint_url=self.url, region_name="us-east-1", **_KEYS)
        return [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]

    def stop(self) -> None:
        self.server.stop()


_KEYS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}


@dataclass
class Rule:
    """Requests whose method is ``method`` and whose path contains ``path`` meet ``action``;
    ``times`` bounds how many (None: all of them)."""

    method: str
    path: str
    action: str
    times: int | None = None

    def matches(self, method: str, path: str) -> bool:
        return method == self.method and self.path in path and self.times != 0


class FaultyS3:
    """Forwards 127.0.0.1:<port> to the S3 server at ``target`` over HTTP/1.1, breaking the
    requests a rule matches. ``met`` lists (method, path, action) of every broken request."""

    def __init__(self, target: str) -> None:
        self.target = urlsplit(target)
        self.rules: list[Rule] = []
        self.met: list[tuple[str, str, str]] = []
        self.lock = threading.Lock()
        self.released = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def fail(self, method: str, path: str, action: str, times: int | None = None) -> None:
        assert action in ACTIONS, action
        with self.lock:
            self.rules.append(Rule(method, path, action, times))

    def heal(self) -> None:
        with self.lock:
            self.rules.clear()

    def close(self) -> None:
        self.released.set()  # hung requests end (their connections close unanswered)
        self.server.shutdown()
        self.server.server_close()

    def _action(self, method: str, path: str) -> str | None:
        with self.lock:
            for rule in self.rules:
                if rule.matches(method, path):
                    if rule.times is not None:
                        rule.times -= 1
                    self.met.append((method, path, rule.action))
                    return rule.action
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    return b"".join(self._chunks())
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _chunks(self) -> Iterator[bytes]:
                while size := int(self.rfile.readline().split(b";")[0], 16):
                    yield self.rfile.read(size)
                    self.rfile.readline()
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers

            def _serve(self) -> None:
                body = self._body()
                action = proxy._action(self.command, self.path)
                if action == "hang":
                    proxy.released.wait()
                    self.close_connection = True
                    return
                if action == "error":
                    self._answer(503, {"Content-Type": "application/xml"}, _UNAVAILABLE)
                    return
                answer = self._forward(body)
                if action == "lose":
                    self.close_connection = True
                    return
                self._answer(*answer)

            def _forward(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
                upstream = http.client.HTTPConnection(
                    proxy.target.hostname, proxy.target.port, timeout=30
                )
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                headers["Content-Length"] = str(len(body))
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    data = b"" if self.command == "HEAD" else response.read()
                    kept = {k: v for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP}
                    if self.command == "HEAD":
                        kept["Content-Length"] = response.getheader("Content-Length", "0")
                    return response.status, kept, data
                finally:
                    upstream.close()

            def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if "Content-Length" not in headers:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _serve

        return Handler


_UNAVAILABLE = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>ServiceUnavailable</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
