"""The SQLite store: sessions, messages, parts, compaction state, leases and the outbox.

It imports nothing from ``server``. All SQL lives in this package.
"""

from store.db import Store, default_db_path
from store.errors import (
    Corrupt,
    Full,
    LeaseLost,
    Locked,
    NotASessionlspDatabase,
    NotFound,
    ReadOnly,
    ReadOnlyView,
    SchemaTooNew,
    StoreError,
)
from store.leases import RunnerId
from store.tx import Tx

__all__ = [
    "Corrupt",
    "Full",
    "LeaseLost",
    "Locked",
    "NotASessionlspDatabase",
    "NotFound",
    "ReadOnly",
    "ReadOnlyView",
    "RunnerId",
    "SchemaTooNew",
    "Store",
    "StoreError",
    "Tx",
    "default_db_path",
]
