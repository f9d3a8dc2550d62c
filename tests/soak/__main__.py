"""``python -m tests.soak [--minutes 3] [--seed N]``: run the soak and print its counts.

Exits 0 when no invariant was violated, 1 otherwise. The working directory (database, logs,
captured frames) is removed after a clean run unless ``--keep`` or ``--workdir`` is given, and
kept (its path printed) after a failed one.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
from pathlib import Path

from tests.soak.harness import SoakConfig, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=3.0, help="length of the load phase")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument(
        "--kill-every",
        type=float,
        nargs=2,
        default=(10.0, 30.0),
        metavar=("MIN", "MAX"),
        help="seconds between kills, drawn uniformly (default 10 30)",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="where to put the files")
    parser.add_argument("--keep", action="store_true", help="keep the files after a clean run")
    parser.add_argument("-v", "--verbose", action="store_true", help="log the harness's steps")
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(threadName)s %(levelname)s %(message)s",
    )
    seed = args.seed if args.seed is not None else random.randrange(1, 1_000_000)
    config = SoakConfig(
        minutes=args.minutes,
        seed=seed,
        clients=args.clients,
        kill_every=(min(args.kill_every), max(args.kill_every)),
        workdir=args.workdir,
        keep=args.keep,
    )
    report = run(config)
    print(report.render(), flush=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
