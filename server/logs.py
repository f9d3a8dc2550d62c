"""Where logs go: stderr or the configured file, never stdout (it carries the protocol)."""

from __future__ import annotations

import logging
import sys

from server.config import Config


def setup_logging(config: Config) -> None:
    level = getattr(logging, config.log_level.upper(), logging.WARNING)
    handler: logging.Handler = (
        logging.FileHandler(config.log_file, encoding="utf-8")
        if config.log_file
        else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    # pygls logs every message body at INFO; keep it at WARNING or above.
    logging.getLogger("pygls").setLevel(max(level, logging.WARNING))
