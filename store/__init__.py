"""The SQLite store: sessions, messages, parts, compaction state, leases and the outbox.

It imports nothing from ``server``. All SQL lives in this package.
"""

from store.db import Store, default_db_path
from store.errors import (
    LeaseLost,
    NotASessionlspDatabase,
    NotFound,
    ReadOnlyView,
    SchemaTooNew,
    StoreError,
)
from store.leases import RunnerId
from store.tx import Tx

__all__ = [
    "LeaseLost",
    "NotASessionlspDatabase",
    "NotFound",
    "ReadOnlyView",
    "RunnerId",
    "SchemaTooNew",
    "Store",
    "StoreError",
    "Tx",
    "default_db_path",
]
