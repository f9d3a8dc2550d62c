"""The ``sessionlsp`` command.

``sessionlsp info [--db PATH]`` opens (creating or migrating) the database and reports its
schema version, integrity and contents. The ``serve`` and ``chat`` commands come with the
server.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from importlib.metadata import version

from store import Store, default_db_path


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


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    parser = argparse.ArgumentParser(prog="sessionlsp")
    parser.add_argument("--version", action="version", version=version("sessionlsp"))
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="open the database and report on it")
    info.add_argument("--db", help=f"database file (default: {default_db_path()})")
    args = parser.parse_args(argv)
    if args.command == "info":
        return _info(args.db)
    return 2


if __name__ == "__main__":
    sys.exit(main())
