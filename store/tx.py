"""``Tx``: every query the store knows, on one connection in one transaction."""

from __future__ import annotations

from store.compactions import CompactionOps
from store.events import EventOps
from store.leases import LeaseOps
from store.maintenance import MaintenanceOps
from store.messages import MessageOps
from store.permissions import PermissionOps
from store.sessions import SessionOps


class Tx(SessionOps, MessageOps, CompactionOps, LeaseOps, EventOps, MaintenanceOps, PermissionOps):
    """A write transaction from ``Store.write()`` or a read snapshot from ``Store.read()``."""
