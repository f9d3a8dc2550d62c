"""The sidecar: compaction engine, context building, and (later) the JSON-RPC server."""
