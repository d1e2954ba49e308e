"""`tinylm serve`: the playground page and its JSON, from Python's own HTTP server (no web framework, nothing loaded
from the network). One thread per request, so two browsers are served at once; a request that fails gets its one
line as JSON with a 4xx status, never a stack trace or a 500.

GET  /                  the page (page.html, one file: its script and styles inline)
GET  /api/runs          the runs to pick from
GET  /api/passage?run=  a passage of the run's test split
POST /api/compare       {"runs": [...], "text": "..."}: every token scored by every run
POST /api/generate      {"runs": [...], "prompt": "...", ...}: samples, streamed as JSON lines
GET  /api/results       the shipped headline and figure names; /figures/NAME.png serves a figure
GET  /api/curve?run=    a run's evaluations
"""

from __future__ import annotations

import json
import re
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlparse

from tinylm.errors import TinyLMError, UsageError
from tinylm.web.playground import Playground

MAX_BODY = 4 << 20
"""Request bodies are read up to 4 MB (a paste of MAX_CHARS characters is well within it)."""
FIGURE = re.compile(r"^/figures/([A-Za-z0-9_.-]+\.png)$")


def make_server(playground: Playground, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """The server, bound (port 0: any free one); `serve_forever()` runs it."""
    page = resources.files("tinylm.web").joinpath("page.html").read_bytes()

    class Handler(_Handler):
        pass

    Handler.playground, Handler.page = playground, page
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


class _Handler(BaseHTTPRequestHandler):
    playground: Playground
    page: bytes
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the terminal shows the address only
        pass

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        figure = FIGURE.match(url.path)
        if url.path == "/":
            self._send(HTTPStatus.OK, self.page, "text/html; charset=utf-8")
        elif figure:
            self._figure(figure.group(1))
        elif url.path == "/api/runs":
            self._json(lambda: {"runs": [e.as_dict() for e in self.playground.runs()]})
        elif url.path == "/api/passage":
            self._json(lambda: {"text": self.playground.passage(query.get("run", ""))})
        elif url.path == "/api/results":
            self._json(self.playground.results)
        elif url.path == "/api/curve":
            self._json(lambda: {"history": self.playground.curve(query.get("run", ""))})
        else:
            self._error(HTTPStatus.NOT_FOUND, f"nothing at {url.path}")

    def do_POST(self) -> None:
        path = urlparse(self.path).path
        if path not in ("/api/compare", "/api/generate"):
            self._error(HTTPStatus.NOT_FOUND, f"nothing at {path}")
            return
        body = self._body()
        if body is None:
            return
        if path == "/api/compare":
            self._json(lambda: self.playground.compare(_names(body), _string(body, "text")))
        else:
            self._generate(body)

    def _body(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                        f"the request has {length:,} bytes; the playground takes at most {MAX_BODY:,}")
            return None
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._error(HTTPStatus.BAD_REQUEST, "the request is not a JSON object")
            return None
        return body

    def _generate(self, body: dict[str, Any]) -> None:
        try:
            events = self.playground.generate(
                _names(body), _string(body, "prompt"), _int(body, "length", 200), _float(body, "temperature", 0.8),
                _int(body, "top_k", None), _float(body, "top_p", None), _int(body, "seed", None))
        except TinyLMError as e:
            self._error(HTTPStatus.BAD_REQUEST, str(e))
            return
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")  # the stream ends when the connection does
        self.end_headers()
        self.close_connection = True
        try:
            for event in events:
                self.wfile.write(json.dumps(event).encode() + b"\n")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the page went away
            return
        except Exception as e:  # mid-stream: said as the last event
            self.wfile.write(json.dumps({"error": _line(e)}).encode() + b"\n")

    def _figure(self, name: str) -> None:
        reference = self.playground.reference
        path = reference / "figures" / name if reference is not None else None
        if path is None or not path.is_file():
            self._error(HTTPStatus.NOT_FOUND, f"no figure {name}")
            return
        self._send(HTTPStatus.OK, path.read_bytes(), "image/png")

    def _json(self, make: Any) -> None:
        try:
            data = make()
        except TinyLMError as e:
            self._error(HTTPStatus.BAD_REQUEST, str(e))
            return
        except Exception as e:  # never a 500 with a traceback: the page shows the line
            self._error(HTTPStatus.UNPROCESSABLE_ENTITY, _line(e))
            return
        self._send(HTTPStatus.OK, json.dumps(data).encode(), "application/json")

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._send(status, json.dumps({"error": message}).encode(), "application/json")

    def _send(self, status: HTTPStatus, data: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)


def _line(e: Exception) -> str:
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"


def _names(body: dict[str, Any]) -> list[str]:
    runs = body.get("runs")
    if not isinstance(runs, list) or not all(isinstance(r, str) for r in runs):
        raise UsageError("runs must be a list of run ids")
    return runs


def _string(body: dict[str, Any], key: str) -> str:
    value = body.get(key, "")
    if not isinstance(value, str):
        raise UsageError(f"{key} must be a text")
    return value


def _int(body: dict[str, Any], key: str, default: int | None) -> int | None:
    value = body.get(key)
    if value in (None, ""):
        return default
    try:
        return int(str(value))
    except ValueError:
        raise UsageError(f"{key} must be a whole number (got {value!r})") from None


def _float(body: dict[str, Any], key: str, default: float | None) -> float | None:
    value = body.get(key, default)
    if value in (None, ""):
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{key} must be a number (got {value!r})") from None


def serve(playground: Playground, host: str, port: int) -> None:
    """Serve until Ctrl-C, saying where; a host other than the loopback gets a one-line warning."""
    try:
        server = make_server(playground, host, port)
    except OSError as e:
        raise UsageError(f"cannot listen on {host}:{port} ({e.strerror}); pick another --port") from None
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {host}: anyone who can reach this machine can use the playground and read "
              "your runs' results", file=sys.stderr)
    print(f"tinylm playground on http://{host}:{server.server_address[1]}/ (Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
