"""The terminal client: ``sessionlsp chat`` and the JSON-RPC client it drives the server with.

It is a client of the protocol, not part of the server: it starts ``sessionlsp serve`` as a child
process and knows it only through the wire (LSP framing, JSON-RPC, the documented methods and
error codes). It imports nothing from ``server/`` or ``store/``, so it can only depend on what
the protocol promises; tests, the soak harness and the benchmarks use :mod:`client.rpc_client`
for the same reason.
"""
