"""The sidecar: the JSON-RPC front end, the prompt runner, providers, tools and the compaction
engine, over one service (``service.Sidecar``). It reaches the database only through ``store``."""
