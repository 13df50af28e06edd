"""An OTLP/HTTP trace receiver: ``POST /v1/traces`` into any tracetag store.

Each request is one atomic store write, acknowledged (200) only once it is durable, so an
exporter's retry is the only copy that can ever be needed. What the OTLP specification asks of
a server, and what a server facing data from others needs:

- ``application/x-protobuf`` and ``application/json`` bodies, gzip or not; the answer is an
  ``ExportTraceServiceResponse`` in the request's own content type;
- 400 for what cannot be decoded (an exporter must not retry it), 413 past the body limit
  (checked on the bytes received and again while decompressing, so a gzip bomb stops at the
  limit), 415 for other content types and encodings, 401 without the bearer token when one
  is set, 429 with ``Retry-After`` when all workers are busy, 503 with ``Retry-After`` when
  the store cannot take the write (a full disk, a lock held too long);
- a trace the store refuses (an invalid tag key, say) is left out and counted in
  ``partial_success``; the rest of the request is written;
- every connection has a read timeout, so a client that sends nothing holds no worker;
- on :meth:`Receiver.stop` no new request is read; requests being handled finish and are
  answered; idle keep-alive connections are closed.

The server is the standard library's threading HTTP server with those limits: it listens on
127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import contextlib
import hmac
import http.server
import socket
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import InvalidInput, TracetagError
from .decode import ProtobufMissing

if TYPE_CHECKING:
    from ..api import TracetagClient

__all__ = ["DEFAULT_MAX_BODY", "Receiver", "ReceiverStats"]

DEFAULT_MAX_BODY = 20 * 1024 * 1024  # the OTLP specification's recommended limit
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_STATUS_INVALID_ARGUMENT = 3  # google.rpc.Code, for the Status body of a failed request
_STATUS_UNAVAILABLE = 14
_STATUS_INTERNAL = 13


@dataclass
class ReceiverStats:
    requests: int = 0  # POSTs answered, whatever the answer
    spans: int = 0  # spans written
    traces: int = 0  # traces written to (one trace may be written by several requests)
    rejected_spans: int = 0  # in traces the store refused (partial success)
    failed: int = 0  # requests answered with an error
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self.lock:
            for k, v in counts.items():
                setattr(self, k, getattr(self, k) + v)


class _Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _pb_string(field_no: int, text: str) -> bytes:
    data = text.encode()
    return _varint(field_no << 3 | 2) + _varint(len(data)) + data


def _response(content_type: str, rejected: int, message: str) -> bytes:
    """An ``ExportTraceServiceResponse``: empty, or with ``partial_success``."""
    if content_type == JSON:
        if not rejected:
            return b"{}"
        partial = {"rejectedSpans": str(rejected), "errorMessage": message}
        return orjson.dumps({"partialSuccess": partial})
    if not rejected:
        return b""
    # partial_success (field 1): rejected_spans (1, int64), error_message (2, string)
    inner = _varint(1 << 3) + _varint(rejected) + _pb_string(2, message)
    return _varint(1 << 3 | 2) + _varint(len(inner)) + inner


def _status_body(content_type: str, code: int, message: str) -> bytes:
    """A ``google.rpc.Status``, which OTLP/HTTP answers a failed request with."""
    if content_type == JSON:
        return orjson.dumps({"code": code, "message": message})
    return _varint(1 << 3) + _varint(code) + _pb_string(2, message)


def gunzip(data: bytes, limit: int) -> bytes:
    """``data`` decompressed, refusing (413) as soon as it passes ``limit`` bytes."""
    d = zlib.decompressobj(wbits=31)
    try:
        out = d.decompress(data, limit + 1)
        if len(out) > limit or d.unconsumed_tail:
            raise _Refused(413, f"the request is over {limit} bytes once decompressed")
        out += d.flush()
    except zlib.error as e:
        raise _Refused(400, f"the body is not gzip ({e})") from None
    if len(out) > limit:
        raise _Refused(413, f"the request is over {limit} bytes once decompressed")
    if not d.eof:
        raise _Refused(400, "the gzip body is truncated")
    return out


class Receiver:
    """Receives OTLP/HTTP traces into ``client``'s store (see the module's description).

    ``experiment_id``: where the traces go; ``labels``: how label lists become tags;
    ``workers``: requests handled at once (more get 429); ``log``: one line per event for a
    person (request lines too when ``verbose``)."""

    def __init__(
        self,
        client: TracetagClient,
        host: str = "127.0.0.1",
        port: int = 4318,
        *,
        experiment_id: str = "0",
        labels: str = "tag",
        token: str | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        workers: int = 16,
        timeout: float = 30.0,
        log: Callable[[str], None] | None = None,
        verbose: bool = False,
    ):
        self.client = client
        self.experiment_id = experiment_id
        self.labels = labels
        self.token = token
        self.max_body = max_body
        self.log = log or (lambda _line: None)
        self.verbose = verbose
        self.stats = ReceiverStats()
        self._busy = threading.BoundedSemaphore(workers)
        self._stopping = threading.Event()
        self._connections: dict[socket.socket, bool] = {}  # socket -> handling a request
        self._conn_lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"receiver": self, "timeout": timeout})
        self.server = _Server((host, port), handler)
        self.host, self.port = self.server.server_address[:2]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = str(self.host)
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/v1/traces"

    def serve_forever(self) -> None:
        self.server.serve_forever(poll_interval=0.2)

    def start(self) -> Receiver:
        """Serve in a background thread (for tests and embedding); :meth:`stop` ends it."""
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, finish and answer the requests in hand, close idle connections."""
        self._stopping.set()
        self.server.shutdown()
        with self._conn_lock:
            for sock, busy in self._connections.items():
                if not busy:  # waiting for a next request that will not be read
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RD)
        self.server.server_close()  # joins the handler threads
        if self._thread is not None:
            self._thread.join()

    # -- one request ---------------------------------------------------------------------------

    def handle(self, headers: Any, body: bytes) -> tuple[int, bytes, str]:
        """(status, body, content type) for a ``POST /v1/traces``."""
        ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        answer_type = ctype if ctype in (JSON, PROTOBUF) else JSON
        try:
            return 200, self._ingest(headers, ctype, body), answer_type
        except _Refused as e:
            code = _STATUS_UNAVAILABLE if e.status in (429, 503) else _STATUS_INVALID_ARGUMENT
            return e.status, _status_body(answer_type, code, str(e)), answer_type
        except Exception as e:  # a bug of ours: one line in the log, a 500, and serve on
            message = f"internal error: {type(e).__name__}: {e}"
            return 500, _status_body(answer_type, _STATUS_INTERNAL, message), answer_type

    def _ingest(self, headers: Any, ctype: str, body: bytes) -> bytes:
        from . import decode_body

        if ctype not in (JSON, PROTOBUF):
            raise _Refused(415, f"content type {ctype or '(none)'!r}: send {PROTOBUF} or {JSON}")
        encoding = (headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding == "gzip":
            body = gunzip(body, self.max_body)
        elif encoding != "identity":
            raise _Refused(415, f"content encoding {encoding!r}: send gzip or none")
        try:
            spans = decode_body(body, ctype)
        except ProtobufMissing as e:
            raise _Refused(415, str(e)) from None
        except (ValueError, RecursionError) as e:
            raise _Refused(400, f"cannot decode the request: {e}") from None
        try:
            written, refused = self.client.ingest_otlp(spans, self.experiment_id, self.labels)
        except InvalidInput as e:
            raise _Refused(400, str(e)) from None
        except (TracetagError, OSError) as e:
            # The store could not write (a full disk, a lock held, a server away): nothing was
            # acknowledged, and writing again is safe (spans are merged by id), so retry.
            raise _Refused(503, f"the store cannot take the write: {e}") from None
        rejected = sum(n for _tid, n, _why in refused)
        self.stats.add(spans=len(spans) - rejected, traces=written)
        message = ""
        if refused:
            self.stats.add(rejected_spans=rejected)
            tid, _n, why = refused[0]
            message = f"{len(refused)} trace(s) refused; {tid}: {why}"
            self.log(f"partly refused: {message}")
        return _response(ctype, rejected, message)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for the requests being handled
    block_on_close = True
    request_queue_size = 64


class _Handler(http.server.BaseHTTPRequestHandler):
    receiver: Receiver
    protocol_version = "HTTP/1.1"  # keep-alive, as exporters expect
    server_version = "tracetag"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        with self.receiver._conn_lock:
            self.receiver._connections[self.connection] = False

    _linger = False

    def finish(self) -> None:
        with self.receiver._conn_lock:
            self.receiver._connections.pop(self.connection, None)
        super().finish()
        if self._linger:
            self._drain()

    def _drain(self) -> None:
        """After refusing a body unread: read (and drop) what the client still sends, for up
        to 2 s, before closing. Closing with unread data makes the kernel reset the
        connection, which can destroy the answer before the client has read it."""
        sock = self.connection
        deadline = time.monotonic() + 2.0
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                if not sock.recv(1 << 20):
                    break

    def parse_request(self) -> bool:
        with self.receiver._conn_lock:
            self.receiver._connections[self.connection] = True
        return super().parse_request()

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        finally:  # whatever the method (an unknown one gets 501): waiting for the next one
            with self.receiver._conn_lock:
                self.receiver._connections[self.connection] = False

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the receiver logs what a person needs, not every request

    def _send(
        self, status: int, body: bytes, ctype: str = "text/plain", retry_after: int | None = None
    ) -> None:
        if self.receiver._stopping.is_set():
            self.close_connection = True  # no next request will be read on this connection
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if retry_after is not None:
            self.send_header("Retry-After", str(retry_after))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        if self.command == "POST":
            self.receiver.stats.add(requests=1)
        if status >= 400 and status != 429:
            self.receiver.stats.add(failed=1)
            first = body.decode("utf-8", "replace")[:300] if ctype != PROTOBUF else ""
            self.receiver.log(
                f"{self.client_address[0]} {self.command} {self.path}: {status} {first}"
            )
        elif self.receiver.verbose:
            self.receiver.log(f"{self.client_address[0]} {self.command} {self.path}: {status}")

    def do_GET(self) -> None:
        if self.path in ("/", "/health"):
            self._send(200, b"tracetag OTLP receiver: POST /v1/traces\n")
        else:
            self._send(404, b"not found: POST /v1/traces\n")

    def do_POST(self) -> None:
        r = self.receiver
        if self.path.split("?")[0] != "/v1/traces":
            self._send(404, b"not found: POST /v1/traces\n")
            return
        if r.token is not None:
            given = self.headers.get("Authorization") or ""
            if not hmac.compare_digest(given.encode(), f"Bearer {r.token}".encode()):
                self.close_connection = self._linger = True
                self._send(401, b"a bearer token is required (Authorization: Bearer ...)\n")
                return
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            # A body we cannot delimit: the connection cannot carry another request.
            self.close_connection = self._linger = True
            self._send(411, b"Content-Length is required\n")
            return
        if int(length) > r.max_body:
            self.close_connection = self._linger = True  # the body is left unread
            self._send(413, f"the request is over {r.max_body} bytes\n".encode())
            return
        body = self._read(int(length))
        if body is None:
            return
        if not r._busy.acquire(blocking=False):
            self._send(429, b"busy: retry later\n", retry_after=1)
            return
        try:
            status, answer, ctype = r.handle(self.headers, body)
        finally:
            r._busy.release()
        retry = 5 if status == 503 else None
        self._send(status, answer, ctype, retry)

    def _read(self, length: int) -> bytes | None:
        chunks, left = [], length
        try:
            while left:
                chunk = self.rfile.read(min(left, 1 << 20))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
        except (TimeoutError, OSError):
            pass
        if left:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._send(400, b"the body ended before Content-Length bytes\n")
            return None
        return b"".join(chunks)
