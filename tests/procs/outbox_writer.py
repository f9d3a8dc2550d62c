"""A writer process for the outbox tests: ``python -m tests.procs.outbox_writer DB SESSION N``.

Opens the store, prints ``ready`` and waits for a line on stdin, then makes N small write
transactions (one message and one text part each). After each commit it prints
``<message id> <part id>``, so its output is its commit order.
"""

from __future__ import annotations

import sys

from store import Store
from store.models import TextPart


def main(argv: list[str]) -> int:
    db, session_id, count = argv[0], argv[1], int(argv[2])
    store = Store(db)
    print("ready", flush=True)
    sys.stdin.readline()  # released by the parent, together with the other writers
    for i in range(count):
        with store.write() as tx:
            message = tx.add_message(session_id, "prompt")
            part = tx.put_part(message.id, TextPart(f"write {i}"))
        print(message.id, part.id, flush=True)
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
