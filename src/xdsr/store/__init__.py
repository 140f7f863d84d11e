"""The store: where the control plane keeps its state (etcd), behind a small
interface so that other backends (the Kubernetes API) can replace it."""

from xdsr.store.base import Compacted, Conflict, Event, Item, Put, Store, StoreError, StoreUnavailable

__all__ = ["Compacted", "Conflict", "Event", "Item", "Put", "Store", "StoreError", "StoreUnavailable"]
