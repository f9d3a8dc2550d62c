"""Two front ends over one service.

``server/protocol.py`` (with ``server/lsp_stdio.py``) speaks sessionlsp's own JSON-RPC protocol
with LSP framing, for editor extensions; ``server/frontends/acp.py`` speaks the Agent Client
Protocol (newline-delimited JSON-RPC) for any ACP client. Both are thin adapters over
``server.service.Sidecar``: sessions, turns, cancel, compaction and cross-process sync follow the
same rules whichever front end a client uses, and several of either kind can share a database.
"""
