"""Loopback servers for what the real service will not do on demand: fail, redirect, drop.

``ScriptedServer`` answers from a script and records every request; ``DroppingProxy`` sits
in front of the real service and loses the response to one request after the service has
handled it, the way a connection reset on the way back does.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int
    body: Any = None  # bytes are sent as they are, anything else as JSON
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


class ScriptedServer:
    """Answers ``(method, path)`` with the next reply of its list; the last one repeats."""

    def __init__(self, script: dict[tuple[str, str], list[Reply]]) -> None:
        self.script = {route: list(replies) for route, replies in script.items()}
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ScriptedServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _reply(self, seen: Seen) -> Reply:
        with self._lock:
            self.seen.append(seen)
            replies = self.script.get((seen.method, seen.path.split("?")[0]))
            if not replies:
                return Reply(404, {"code": "not_found", "title": "not scripted", "status": 404})
            return replies.pop(0) if len(replies) > 1 else replies[0]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                seen = Seen(
                    self.command, self.path, dict(self.headers.items()),
                    self.rfile.read(length), time.monotonic(),
                )  # fmt: skip
                reply = scripted._reply(seen)
                body = _encode(reply.body)
                self.send_response(reply.status)
                kind = "application/problem+json" if reply.status >= 400 else "application/json"
                for name, value in {"Content-Type": kind, **reply.headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = handle_one

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the test asserts on ``seen`` instead."""

        return Handler


class DroppingProxy:
    """TCP proxy to ``upstream_port``. The first request whose request line starts with
    ``drop`` reaches the service, but its connection is closed once the answer is back,
    without passing the answer on. Everything else is forwarded both ways untouched."""

    def __init__(self, upstream_port: int, drop: bytes) -> None:
        self.upstream_port = upstream_port
        self.drop = drop
        self.first_requests: list[bytes] = []  # the first request of every connection
        self._dropped = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self._listener.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._serve, args=(downstream,), daemon=True).start()

    def _serve(self, downstream: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        request = _read_request(downstream)
        self.first_requests.append(request)
        upstream.sendall(request)
        if not self._dropped and request.startswith(self.drop):
            self._dropped = True
            upstream.recv(65536)  # the service has answered, so it has done the work
            downstream.close()
            upstream.close()
            return
        threading.Thread(target=_pump, args=(upstream, downstream), daemon=True).start()
        _pump(downstream, upstream)


def _encode(body: Any) -> bytes:
    if body is None or isinstance(body, bytes):
        return body or b""
    return json.dumps(body).encode()


def _read_request(connection: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += connection.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
         if line.lower().startswith(b"content-length:")),
        0,
    )  # fmt: skip
    while len(body) < length:
        body += connection.recv(65536)
    return head + b"\r\n\r\n" + body


def _pump(source: socket.socket, target: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            target.sendall(chunk)
    except OSError:
        pass
    finally:
        for end in (source, target):
            end.close()


def header(request: bytes, name: str) -> str | None:
    """A header's value in a raw request."""
    for line in request.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name.lower().encode():
            return value.strip().decode()
    return None
