"""A Hub stand-in on 127.0.0.1 that misbehaves on demand (the reliability suite's servers).

It serves one repository at one commit, in the shape huggingface_hub reads: the revision API
(``/api/models/<repo>/revision/<rev>``: sha and file list) and ``/<repo>/resolve/<rev>/<file>``
(HEAD: commit, ETag and size headers; GET: the bytes, honouring ``Range``). A test sets
``faults``: a list of :class:`Fault`, each applied to the next matching requests, to answer
with a status, hang, cut the body, send more or less than ``Content-Length``, redirect
elsewhere or lie in its headers. Every request is logged in ``requests`` as ``METHOD path``.

``slow`` streams every body ``chunk`` bytes at a time with a pause between, and ``sent`` counts
the bytes of bodies written so far (kill -9 sweeps wait on it). ``/raw/<revision>/<name>``
serves the same files in GitHub's raw-URL shape (``raw_template`` for PIPEYARD_COMMUNITY_URL).
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import json
import socket
import threading
import time

COMMIT = "c0ffee" + "0" * 34


@dataclasses.dataclass
class Fault:
    """What the next ``times`` requests matching ``method`` and ``path_part`` get instead.

    kind: ``status`` (answer ``status``, with ``retry_after`` when set), ``hang`` (accept and
    say nothing for ``seconds``), ``reset`` (send the headers and half the body, then close),
    ``short`` / ``long`` (a body shorter / longer than its ``Content-Length``), ``redirect``
    (302 to ``location``), ``commit`` (a wrong ``X-Repo-Commit``), ``etag`` (a wrong ETag).
    """

    kind: str
    method: str = "GET"
    path_part: str = "/resolve/"
    times: int = 1_000_000
    status: int = 503
    retry_after: str | None = None
    seconds: float = 30.0
    location: str = ""


class FaultyHub:
    """The server; ``files`` maps repo paths to bytes (one repo, ``repo_id``, at ``COMMIT``)."""

    def __init__(self, repo_id: str, files: dict[str, bytes]) -> None:
        self.repo_id, self.files = repo_id, files
        self.faults: list[Fault] = []
        self.requests: list[str] = []
        self.authorized: list[str] = []  # requests that carried an Authorization header
        self.slow: tuple[int, float] | None = None  # (chunk bytes, pause seconds)
        self.sent = 0
        self._lock = threading.Lock()
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                hub._answer(self, "GET")

            def do_HEAD(self) -> None:  # noqa: N802
                hub._answer(self, "HEAD")

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.raw_template = f"{self.endpoint}/raw/{{revision}}/{{name}}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def count(self, part: str) -> int:
        return sum(part in r for r in self.requests)

    # ------------------------------------------------------------------ answers

    def _fault_for(self, method: str, path: str) -> Fault | None:
        with self._lock:
            self.requests.append(f"{method} {path}")
            for fault in self.faults:
                if fault.times > 0 and fault.method == method and fault.path_part in path:
                    fault.times -= 1
                    return fault
        return None

    def _answer(self, handler: http.server.BaseHTTPRequestHandler, method: str) -> None:
        if handler.headers.get("Authorization"):
            self.authorized.append(f"{method} {handler.path}")
        fault = self._fault_for(method, handler.path)
        if fault is not None and fault.kind == "hang":
            time.sleep(fault.seconds)
            handler.close_connection = True
            return
        if fault is not None and fault.kind == "status":
            handler.send_response(fault.status)
            if fault.retry_after is not None:
                handler.send_header("Retry-After", fault.retry_after)
            self._end(handler, b"{}" if method == "GET" else b"", "application/json")
            return
        if fault is not None and fault.kind == "redirect":
            handler.send_response(302)
            handler.send_header("Location", fault.location)
            self._end(handler, b"", "text/plain")
            return
        path = handler.path.split("?", 1)[0]
        prefix = f"/api/models/{self.repo_id}/revision/"
        if path.startswith(prefix):
            self._revision(handler, method)
        elif path.startswith("/raw/"):
            self._raw(handler, method, path.split("/", 3)[3], fault)
        elif path.startswith(f"/{self.repo_id}/resolve/"):
            self._file(handler, method, path.split("/resolve/", 1)[1].split("/", 1)[1], fault)
        else:
            handler.send_response(404)
            handler.send_header("X-Error-Code", "RepoNotFound")
            self._end(handler, b"{}", "application/json")

    def _revision(self, handler: http.server.BaseHTTPRequestHandler, method: str) -> None:
        info = {"id": self.repo_id, "sha": COMMIT, "siblings": [{"rfilename": n} for n in sorted(self.files)]}
        handler.send_response(200)
        self._end(handler, json.dumps(info).encode() if method == "GET" else b"", "application/json")

    def _raw(self, handler: http.server.BaseHTTPRequestHandler, method: str, name: str, fault: Fault | None) -> None:
        data = self.files.get(name)
        short = fault is not None and fault.kind == "short"  # half the body, then the connection closes
        handler.send_response(200 if data is not None else 404)
        handler.send_header("Content-Length", str(len(data or b"")))
        handler.end_headers()
        if method == "GET" and data:
            self._stream(handler, data[: len(data) // 2] if short else data)
        if short:
            handler.close_connection = True

    def _file(self, handler: http.server.BaseHTTPRequestHandler, method: str, name: str, fault: Fault | None) -> None:
        data = self.files.get(name)
        if data is None:
            handler.send_response(404)
            handler.send_header("X-Error-Code", "EntryNotFound")
            handler.send_header("X-Repo-Commit", COMMIT)
            self._end(handler, b"", "text/plain")
            return
        start = _range_start(handler.headers.get("Range"))
        body = data[start:]
        handler.send_response(206 if start else 200)
        etag = hashlib.sha256(data).hexdigest()
        kind = fault.kind if fault is not None else ""
        handler.send_header("X-Repo-Commit", "badc0de" + "1" * 33 if kind == "commit" else COMMIT)
        handler.send_header("ETag", f'"{"0" * 64 if kind == "etag" else etag}"')
        declared = {"short": len(body) + 100, "long": max(len(body) - 10, 0)}.get(kind, len(body))
        handler.send_header("Content-Length", str(declared))
        if start:
            handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        handler.end_headers()
        if method == "HEAD":
            return
        if kind == "reset":
            handler.wfile.write(body[: len(body) // 2])
            handler.wfile.flush()
            _reset(handler.connection)
            handler.close_connection = True
            return
        self._stream(handler, body + (b"#garbage" * 4 if kind == "long" else b""))
        if kind in ("short", "long"):
            handler.close_connection = True

    def _stream(self, handler: http.server.BaseHTTPRequestHandler, body: bytes) -> None:
        chunk, pause = self.slow or (len(body) or 1, 0.0)
        for at in range(0, len(body), chunk):
            handler.wfile.write(body[at : at + chunk])
            handler.wfile.flush()
            with self._lock:
                self.sent += len(body[at : at + chunk])
            time.sleep(pause)

    @staticmethod
    def _end(handler: http.server.BaseHTTPRequestHandler, body: bytes, kind: str) -> None:
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if body:
            handler.wfile.write(body)


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client killed mid-body (the point of the kill sweeps): nothing to report


def _range_start(header: str | None) -> int:
    if not header or not header.startswith("bytes="):
        return 0
    try:
        return int(header[6:].split("-", 1)[0] or 0)
    except ValueError:
        return 0


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), as a dropped connection looks to the client."""
    import struct

    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
