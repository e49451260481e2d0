"""A hostile HTTP server for the security tests, run as a real process on 127.0.0.1.

``python -m tests.reliability.hostile_server PORT`` serves, by the first path segments of any request:

- ``/redirect/<status>/...``: that 3xx status, ``Location`` pointing at ``/sink`` on ``localhost``
  (another host name for requests);
- ``/sink...``: counts the requests it receives (``GET /_hits`` answers the count as JSON);
- ``/echo/<status>/...``: that status with the request's headers echoed in the body, raw, JSON-escaped
  and as a Python repr (what a debugging proxy or a misconfigured server does);
- ``/wait/<seconds>/...``: 429 asking to come back in that many seconds (body and ``Retry-After``);
- ``/huge/<megabytes>/...``: 200 with a JSON body that large, streamed;
- ``/drip/<seconds>/...``: 200 announcing a 10 kB body, then one byte every ``seconds`` (each read
  well within any socket timeout).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_HITS = {"sink": 0}
_LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        parts = [p for p in self.path.split("?")[0].split("/") if p]
        kind, arg = [*parts, "", ""][:2]
        if kind == "_hits":
            return self._answer(200, json.dumps(_HITS).encode())
        if kind == "sink":
            with _LOCK:
                _HITS["sink"] += 1
            return self._answer(200, json.dumps({"batchID": "from-the-other-host"}).encode())
        if kind == "redirect":
            target = f"http://localhost:{self.server.server_address[1]}/sink/batches"
            return self._answer(int(arg), b"", {"Location": target})
        if kind == "echo":
            return self._echo(int(arg))
        if kind == "wait":
            body = json.dumps({"title": "Too Many Requests", "retryAfter": int(arg)}).encode()
            return self._answer(429, body, {"Retry-After": arg})
        if kind == "huge":
            return self._huge(int(arg))
        if kind == "drip":
            return self._drip(float(arg))
        return self._answer(404, b"{}")

    def _echo(self, status: int) -> None:
        headers = dict(self.headers.items())
        text = f"headers {headers!r} raw " + " ".join(f"{k}: {v}" for k, v in headers.items())
        body = {"title": "echo", "detail": text,
                "errors": [{"field": "headers", "message": json.dumps(headers)}]}
        if status < 300:
            body = {"echo": text}
        self._answer(status, json.dumps(body).encode())

    def _huge(self, megabytes: int) -> None:
        chunk = b" " * (1 << 20)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(megabytes * len(chunk) + 2))
        self.end_headers()
        try:
            self.wfile.write(b"{")
            for _ in range(megabytes):
                self.wfile.write(chunk)
            self.wfile.write(b"}")
        except (BrokenPipeError, ConnectionResetError):  # the client stopped reading: as it should
            pass

    def _drip(self, seconds: float) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "10000")
        self.end_headers()
        try:
            for _ in range(10000):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(seconds)
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_GET = do_POST = do_DELETE = do_PUT = _handle


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
