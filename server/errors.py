"""The JSON-RPC error codes sessionlsp answers with. Stable: clients may switch on them.

The same numbers appear as ``error.code`` inside results that report a failure (a turn that
ended with ``stopReason: "error"``), so one table explains both. docs/protocol.md lists them.
"""

from __future__ import annotations

from typing import Any

PARSE_ERROR = -32700  # the frame's body is not JSON (or not UTF-8)
INVALID_REQUEST = -32600  # JSON, but not a JSON-RPC request; or a frame over the size limit
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602  # the message names the field
INTERNAL_ERROR = -32603  # a bug; the server keeps serving
SERVER_NOT_INITIALIZED = -32002  # LSP's code: a request before `initialize`
REQUEST_CANCELLED = -32800  # LSP's RequestCancelled
# sessionlsp's own codes, outside the range JSON-RPC and LSP reserve (-32768..-32000):
UNKNOWN_SESSION = -31001
PROVIDER_NOT_CONFIGURED = -31002
PROVIDER_ERROR = -31003  # in a turn's error: with status and retryable
CONTEXT_TOO_LARGE = -31004  # the conversation does not fit and cannot be compacted to fit
STORAGE_ERROR = -31005  # the database is locked, read-only, full or damaged


class RpcFailure(Exception):
    """An error to send back as a JSON-RPC error response."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


def invalid_params(field: str, problem: str) -> RpcFailure:
    return RpcFailure(INVALID_PARAMS, f"invalid params: {field} {problem}", {"field": field})
