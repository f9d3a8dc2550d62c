"""A minimal pygls 2 server with one custom ``echo`` request: the baseline for bench/server.py.

It is what any pygls server pays (interpreter start, importing pygls and lsprotocol, the
``initialize`` handshake, one request dispatched through pygls) with nothing of sessionlsp in
it. Run as ``python -m bench.echo_server``; it speaks LSP-framed JSON-RPC on stdin/stdout.
"""

from __future__ import annotations

from typing import Any

from pygls.lsp.server import LanguageServer

server = LanguageServer("bench-echo", "1")


@server.feature("echo")
def echo(ls: LanguageServer, params: Any) -> Any:
    return {"echo": getattr(params, "text", None)}


if __name__ == "__main__":
    server.start_io()
