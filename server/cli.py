"""The ``sessionlsp`` command.

* ``serve [--db PATH] [--config PATH]``: the JSON-RPC server on stdin/stdout (what editors run).
* ``acp [--db PATH] [--config PATH]``: the Agent Client Protocol agent on stdin/stdout.
* ``chat [--session ID] [MESSAGE]``: a terminal client that runs ``serve`` and talks to it.
* ``config [--config PATH]``: the effective configuration, secrets masked.
* ``info [--db PATH]``: the database's schema version, integrity and contents.

Only ``serve`` and ``acp`` write protocol bytes to stdout; logs always go to stderr or the log file.

The command is the entry point for both the server and the terminal client, so this module is the
one place in ``server/`` that imports :mod:`client` (for ``chat``); the client imports nothing
from the server and reaches it only through the protocol.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from importlib.metadata import version
from typing import BinaryIO

from client.chat import build_parser, run_chat
from server.config import Config, ConfigError, default_config_path, load_config
from server.logs import setup_logging
from server.lsp_stdio import serve_stdio
from store import Store, StoreError, default_db_path


def _info(db: str | None) -> int:
    store = Store(db)
    with store.read() as tx:
        stats = tx.stats()
    store.close()
    report = {
        "db": str(store.path),
        "schemaVersion": stats.schema_version,
        "integrity": stats.integrity[0] if stats.integrity == ["ok"] else stats.integrity,
        "rows": stats.rows,
        "activeCompactions": stats.active_compactions,
    }
    print(json.dumps(report, indent=2))
    return 0 if stats.integrity == ["ok"] else 1


def _serve(args: argparse.Namespace) -> int:
    return _on_stdio(args, serve_stdio)


def _acp(args: argparse.Namespace) -> int:
    # Imported here: `serve` does not pay for loading the ACP SDK and pydantic (~0.3 s).
    from server.frontends.acp_stdio import serve_stdio as serve_acp  # noqa: PLC0415

    return _on_stdio(args, serve_acp)


def _on_stdio(args: argparse.Namespace, serve: Callable[[Config, BinaryIO, BinaryIO], int]) -> int:
    """Run a front end on stdin/stdout, then end the process with its exit code."""
    config = load_config(config_path=args.config, db_override=args.db)
    setup_logging(config)
    stdout = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but the protocol may reach the real stdout
    code = serve(config, sys.stdin.buffer, stdout)
    logging.shutdown()
    sys.stderr.flush()
    os._exit(code)  # the stdin reader thread may still be blocked in read()


def _config(args: argparse.Namespace) -> int:
    config = load_config(config_path=args.config, db_override=args.db)
    print(json.dumps(config.public_json(), indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    parser = argparse.ArgumentParser(prog="sessionlsp")
    parser.add_argument("--version", action="version", version=version("sessionlsp"))
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the JSON-RPC server on stdin/stdout")
    serve.add_argument("--db", help=f"database file (default: {default_db_path()})")
    serve.add_argument("--config", help=f"config file (default: {default_config_path()})")

    acp = commands.add_parser("acp", help="run the Agent Client Protocol agent on stdin/stdout")
    acp.add_argument("--db", help=f"database file (default: {default_db_path()})")
    acp.add_argument("--config", help=f"config file (default: {default_config_path()})")

    build_parser(commands)

    config = commands.add_parser("config", help="print the effective configuration")
    config.add_argument("--db", help="database file")
    config.add_argument("--config", help=f"config file (default: {default_config_path()})")

    info = commands.add_parser("info", help="open the database and report on it")
    info.add_argument("--db", help=f"database file (default: {default_db_path()})")

    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "acp":
            return _acp(args)
        if args.command == "chat":
            return run_chat(args, sys.stdin, sys.stdout, sys.stderr)
        if args.command == "config":
            return _config(args)
        if args.command == "info":
            return _info(args.db)
    except ConfigError as e:
        print(f"sessionlsp: {e}", file=sys.stderr)
        return 2
    except StoreError as e:
        print(f"sessionlsp: {e}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
