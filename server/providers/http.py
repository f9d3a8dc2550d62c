"""The HTTP side of a streaming chat provider: one connection per attempt, retries, cancel.

A provider builds the request body and its headers and knows how to read its answer (a
:class:`StreamedAnswer`); :class:`HttpTransport` does the rest, standard library only:

* 429 and 500/502/503/504/529, and transport failures (refused, reset, timeout) before anything
  was streamed, are retried up to ``max_retries`` times, honouring ``Retry-After`` and
  ``retry-after-ms``; each wait is announced through ``sink.retry`` and watches the cancel token.
* Once a delta has been passed to the sink nothing is retried (it would duplicate text).
* A request longer than the model's context raises :class:`ContextOverflow`.
* A watcher thread shuts the socket down within a few tens of milliseconds of the cancel token
  being set, so even a silent server is abandoned promptly.
* Every exception message, log line and retry notice is scrubbed of the secrets (the API key,
  a password in the base URL, bearer and ``sk-`` tokens).

An event stream is read incrementally and split by :class:`~server.providers.sse.SSEParser`,
so that every delta reaches the sink as soon as it arrives; a server that ignored streaming and
answered with one JSON document is read whole.
"""

from __future__ import annotations

import contextlib
import email.utils
import http.client
import json
import logging
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from server.providers.base import (
    CancelToken,
    ChatResult,
    ContextOverflow,
    ProviderCancelled,
    ProviderError,
    ProviderNotConfigured,
    RetryNotice,
    StreamSink,
)
from server.providers.sse import SSEParser, well_formed

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 529})
OVERFLOW_STATUSES = frozenset({400, 413})
OVERFLOW_PATTERNS = (
    "context_length_exceeded",
    "maximum context length",
    "context length",
    "context window",
    "too many tokens",
    "prompt is too long",
    "input is too long",
    "reduce the length",
    "exceeds the limit of",
    # llama.cpp: "the request exceeds the available context size, try increasing it"
    "exceeds the available context size",
    "exceed_context_size",
)

MESSAGE_CAP = 500  # characters of any exception message
WATCH_INTERVAL_S = 0.02  # how often the watcher looks at the cancel token
WAIT_STEP_S = 0.05  # longest blind sleep while waiting to retry
MAX_RETRY_AFTER_S = 60.0  # a longer Retry-After (or backoff_max_s, if larger) is not waited for
ERROR_BODY_LIMIT = 64 * 1024  # bytes read from an error response
JSON_BODY_LIMIT = 32 * 1024 * 1024  # bytes read from a non-streamed answer
READ_SIZE = 64 * 1024
MIN_SECRET_CHARS = 4  # shorter keys are not secrets worth mangling every message for

_BEARER = re.compile(r"(?i)\b(bearer)\s+[^\s\"',;]+")
_SK_TOKEN = re.compile(r"\bsk-[A-Za-z0-9][A-Za-z0-9_\-]{5,}")


def scrub(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with every secret replaced by ``***``, bearer and ``sk-`` tokens masked, lone
    surrogates replaced, capped at :data:`MESSAGE_CAP` characters."""
    text = well_formed(text)
    for secret in secrets:
        text = text.replace(secret, "***")
    text = _BEARER.sub(r"\1 ***", text)
    text = _SK_TOKEN.sub("sk-***", text)
    if len(text) > MESSAGE_CAP:
        text = text[: MESSAGE_CAP - 1] + "…"
    return text


def is_context_overflow(text: str) -> bool:
    lowered = text.lower()
    return any(pattern in lowered for pattern in OVERFLOW_PATTERNS)


def error_text(payload: object) -> str:
    """The human part of an error payload: ``error.message`` and its usual variants."""
    if isinstance(payload, list) and payload:
        return error_text(payload[0])
    if isinstance(payload, str):
        return payload
    if not isinstance(payload, dict):
        return ""
    err = payload.get("error", payload)
    if isinstance(err, str):
        return err
    if isinstance(err, dict):
        for key in ("message", "msg", "detail"):
            value = err.get(key)
            if isinstance(value, str) and value:
                return value
    for key in ("message", "detail"):
        value = payload.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def _body_text(raw: bytes) -> tuple[str, str]:
    """(message, whole text) of an error body, JSON or not."""
    text = raw.decode("utf-8", "replace")
    try:
        payload = json.loads(text)
    except ValueError:
        return " ".join(text.split())[:300], text
    return error_text(payload), text


@dataclass(frozen=True)
class HttpSettings:
    request_timeout_s: float = 60.0  # connect, and the longest silence between bytes (stall)
    max_retries: int = 4
    backoff_base_s: float = 1.0
    backoff_max_s: float = 30.0


@dataclass(frozen=True)
class Endpoint:
    scheme: str
    host: str
    port: int | None
    path: str  # "/v1/chat/completions", with the base URL's query string if any
    display: str  # the URL without user info, safe to show
    password: str | None

    @staticmethod
    def parse(base_url: str, path: str) -> Endpoint:
        """The endpoint at ``path`` (such as ``"/chat/completions"``) under ``base_url``."""
        parts = urllib.parse.urlsplit(base_url.strip())
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise ProviderNotConfigured(
                "baseUrl must be an http:// or https:// URL such as http://127.0.0.1:8080/v1"
            )
        try:
            port = parts.port
        except ValueError:
            raise ProviderNotConfigured("baseUrl has an invalid port") from None
        path = parts.path.rstrip("/") + path
        if parts.query:
            path += "?" + parts.query
        host = parts.hostname
        netloc = f"[{host}]" if ":" in host else host
        if port is not None:
            netloc += f":{port}"
        display = urllib.parse.urlunsplit((scheme, netloc, path.split("?", 1)[0], "", ""))
        return Endpoint(scheme, host, port, path, display, parts.password)


class _Retry(Exception):
    """Internal: this attempt failed in a way worth another try (nothing was streamed)."""

    def __init__(self, error: ProviderError, reason: str, delay_s: float | None = None):
        super().__init__(error.message)
        self.error = error
        self.reason = reason
        self.delay_s = delay_s


class _Watchdog:
    """Shuts the connection's socket down soon after ``cancel`` is set, even mid-read."""

    def __init__(self, conn: http.client.HTTPConnection, cancel: CancelToken) -> None:
        self._conn = conn
        self._cancel = cancel
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="provider-cancel-watch", daemon=True)

    def __enter__(self) -> _Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._done.wait(WATCH_INTERVAL_S):
            if not self._cancel.is_set():
                continue
            sock = self._conn.sock
            if sock is None:  # still connecting; the caller checks the token once connected
                continue
            log.debug("cancel requested: closing the connection")
            _abort_socket(sock)
            return


def _abort_socket(sock: socket.socket) -> None:
    # socket.socket.shutdown rather than SSLSocket.shutdown: the latter would drop the TLS
    # object under the reading thread's feet. Shutting the descriptor down wakes a blocked recv.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


def retry_after(headers: http.client.HTTPMessage) -> float | None:
    """Seconds the server asks us to wait, from ``retry-after-ms`` or ``Retry-After``."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            value = float(millis)
        except ValueError:
            value = -1.0
        if value >= 0:
            return value / 1000.0
    after = headers.get("retry-after")
    if not after:
        return None
    after = after.strip()
    try:
        seconds = float(after)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(after)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    return seconds if seconds >= 0 else None


class StreamedAnswer(Protocol):
    """One attempt's answer, as the provider reads it. The transport feeds it the data of each
    server-sent event, or the whole JSON document of a server that did not stream."""

    streamed: bool  # a delta has reached the sink: retrying would duplicate it
    done: bool  # the stream's end marker was seen: stop reading

    @property
    def complete(self) -> bool:
        """The answer has ended (end marker or finish reason): a cut after this is no loss."""
        ...

    def event(self, data: str) -> None: ...

    def document(self, payload: dict[str, Any]) -> ChatResult: ...

    def result(self) -> ChatResult: ...


class HttpTransport:
    """POSTs a request body to one endpoint and reads the answer, with retries and cancel."""

    def __init__(
        self,
        endpoint: Endpoint,
        headers: Mapping[str, str],
        settings: HttpSettings,
        secrets: tuple[str | None, ...] = (),
    ) -> None:
        self.endpoint = endpoint
        self._headers = dict(headers)
        self._settings = settings
        self._secrets = tuple(
            s for s in (*secrets, endpoint.password) if s and len(s) >= MIN_SECRET_CHARS
        )
        self._ssl = ssl.create_default_context() if endpoint.scheme == "https" else None

    def _connection(self) -> http.client.HTTPConnection:
        ep = self.endpoint
        timeout = self._settings.request_timeout_s
        if self._ssl is not None:
            return http.client.HTTPSConnection(ep.host, ep.port, timeout=timeout, context=self._ssl)
        return http.client.HTTPConnection(ep.host, ep.port, timeout=timeout)

    # -- errors -----------------------------------------------------------------------------

    def fail(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        overflow: bool = False,
    ) -> ProviderError:
        cls = ContextOverflow if overflow else ProviderError
        return cls(scrub(message, self._secrets), status=status, retryable=retryable)

    def _status_error(self, resp: http.client.HTTPResponse) -> Exception:
        try:
            raw = resp.read(ERROR_BODY_LIMIT)
        except (OSError, http.client.HTTPException, ValueError):
            raw = b""
        message, whole = _body_text(raw)
        status = resp.status
        label = f"HTTP {status} {resp.reason or ''}".strip()
        text = f"{label}: {message}" if message else label
        if status in OVERFLOW_STATUSES and is_context_overflow(message + " " + whole):
            return self.fail(text, status=status, overflow=True)
        if status in RETRY_STATUSES:
            error = self.fail(text, status=status, retryable=True)
            return _Retry(error, scrub(label, self._secrets), retry_after(resp.msg))
        if status in (401, 403):
            text += " (check apiKey)"
        elif status == 404:
            text += f" (check baseUrl and model: {self.endpoint.display})"
        return self.fail(text, status=status)

    def _connect_error(self, exc: BaseException) -> Exception:
        where = self.endpoint.display
        if isinstance(exc, socket.gaierror):
            return self.fail(f"could not resolve the host of {where}: {exc}")
        if isinstance(exc, ssl.SSLCertVerificationError):
            return self.fail(f"the TLS certificate of {where} was rejected: {exc}")
        if isinstance(exc, TimeoutError):
            reason = f"no response within {self._settings.request_timeout_s:g} s"
        elif isinstance(exc, ConnectionRefusedError):
            reason = "connection refused"
        else:
            reason = f"connection failed ({type(exc).__name__}: {exc})"
        error = self.fail(f"could not reach {where}: {reason}", retryable=True)
        return _Retry(error, scrub(reason, self._secrets))

    def _stream_error(self, exc: BaseException, answer: StreamedAnswer) -> Exception:
        if isinstance(exc, TimeoutError):
            reason = f"the stream stalled: no data for {self._settings.request_timeout_s:g} s"
        else:
            reason = f"the stream was cut ({type(exc).__name__}: {exc})"
        error = self.fail(reason, retryable=True)
        if answer.streamed:
            return error
        return _Retry(error, scrub(reason, self._secrets))

    # -- one attempt ------------------------------------------------------------------------

    def _attempt(self, body: bytes, answer: StreamedAnswer, cancel: CancelToken) -> ChatResult:
        conn = self._connection()
        try:
            with _Watchdog(conn, cancel):
                try:
                    conn.request("POST", self.endpoint.path, body=body, headers=self._headers)
                    resp = conn.getresponse()
                except Exception as exc:
                    if cancel.is_set():
                        raise ProviderCancelled() from None
                    if isinstance(exc, (OSError, http.client.HTTPException)):
                        raise self._connect_error(exc) from None
                    raise self.fail(f"could not send the request ({type(exc).__name__})") from None
                if cancel.is_set():
                    raise ProviderCancelled()
                if not 200 <= resp.status < 300:
                    raise self._status_error(resp)
                content_type = (resp.getheader("Content-Type") or "").lower()
                if "application/json" in content_type:
                    return self._read_json(resp, answer, cancel)
                return self._read_stream(resp, answer, cancel)
        finally:
            conn.close()

    def _read(
        self, resp: http.client.HTTPResponse, answer: StreamedAnswer, cancel: CancelToken
    ) -> bytes:
        try:
            return resp.read1(READ_SIZE)
        except Exception as exc:
            if cancel.is_set():
                raise ProviderCancelled() from None
            if not isinstance(exc, (OSError, http.client.HTTPException)):
                raise
            if answer.complete:
                return b""
            raise self._stream_error(exc, answer) from None

    def _read_stream(
        self, resp: http.client.HTTPResponse, answer: StreamedAnswer, cancel: CancelToken
    ) -> ChatResult:
        parser = SSEParser()
        seen = 0
        while not answer.done:
            if cancel.is_set():
                raise ProviderCancelled()
            data = self._read(resp, answer, cancel)
            if cancel.is_set():
                raise ProviderCancelled()
            events = parser.feed(data) if data else parser.finish()
            for event in events:
                seen += 1
                answer.event(event)
                if cancel.is_set():
                    raise ProviderCancelled()
                if answer.done:
                    break
            if not data:
                break
        if not answer.complete:
            if not seen:
                content_type = resp.getheader("Content-Type") or "none"
                raise self.fail(
                    "the provider's answer was not an event stream "
                    f"(Content-Type: {content_type}); check baseUrl"
                )
            raise self.fail("the stream ended before the answer was complete")
        return answer.result()

    def _read_json(
        self, resp: http.client.HTTPResponse, answer: StreamedAnswer, cancel: CancelToken
    ) -> ChatResult:
        """A server that ignored ``"stream": true`` and answered with one JSON document."""
        chunks: list[bytes] = []
        size = 0
        while size <= JSON_BODY_LIMIT:
            data = self._read(resp, answer, cancel)
            if not data:
                break
            chunks.append(data)
            size += len(data)
        if cancel.is_set():
            raise ProviderCancelled()
        try:
            payload = json.loads(b"".join(chunks))
        except ValueError:
            raise self.fail("the provider answered with malformed JSON") from None
        if not isinstance(payload, dict):
            raise self.fail("the provider answered with unexpected JSON")
        return answer.document(payload)

    # -- the public call --------------------------------------------------------------------

    def post(
        self,
        body: bytes,
        new_answer: Callable[[], StreamedAnswer],
        sink: StreamSink,
        cancel: CancelToken,
    ) -> ChatResult:
        """Send ``body``, read the answer into ``new_answer()`` (a fresh one per attempt), and
        return its result. Raises ProviderError (ContextOverflow when too long) or
        ProviderCancelled."""
        settings = self._settings
        retries = 0
        while True:
            answer = new_answer()
            try:
                result = self._attempt(body, answer, cancel)
            except _Retry as retry:
                if cancel.is_set():
                    raise ProviderCancelled() from None
                delay = retry.delay_s
                if retries >= settings.max_retries:
                    raise self._gave_up(retry.error, retries) from None
                if delay is not None and delay > max(MAX_RETRY_AFTER_S, settings.backoff_max_s):
                    error = retry.error
                    raise self.fail(
                        f"{error.message} (the server asks to wait {delay:.0f} s before retrying)",
                        status=error.status,
                        retryable=True,
                    ) from None
                retries += 1
                if delay is None:
                    delay = min(
                        settings.backoff_base_s * 2 ** (retries - 1), settings.backoff_max_s
                    )
                notice = RetryNotice(retries, delay, retry.reason)
                log.info(
                    "retry %d/%d in %.2f s: %s",
                    retries,
                    settings.max_retries,
                    delay,
                    retry.reason,
                )
                sink.retry(notice)
                self._pause(delay, cancel)
                continue
            except ProviderError as error:
                if cancel.is_set():
                    raise ProviderCancelled() from None
                log.info("request failed: %s", error.message)
                raise
            log.debug("answer finished: %s usage=%s", result.finish, result.usage)
            return result

    def _gave_up(self, error: ProviderError, retries: int) -> ProviderError:
        message = error.message
        if retries:
            message += f" (gave up after {retries} {'retry' if retries == 1 else 'retries'})"
        log.info("request failed: %s", scrub(message, self._secrets))
        return self.fail(message, status=error.status, retryable=True)

    @staticmethod
    def _pause(delay_s: float, cancel: CancelToken) -> None:
        deadline = time.monotonic() + delay_s
        while True:
            if cancel.is_set():
                raise ProviderCancelled()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            step = min(WAIT_STEP_S, remaining)
            if isinstance(cancel, threading.Event):
                cancel.wait(step)
            else:
                time.sleep(step)
