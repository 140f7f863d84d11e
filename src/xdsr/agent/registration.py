"""The node's registration: its LbnRecord in the store, on a lease.

The record exists exactly while the agent lives: the lease is kept alive
every few seconds and expires `ttl` seconds after the agent dies, which is
how the operator learns a node is gone. The store being away never stops
the agent from serving and forwarding; registration simply resumes when the
store is back, on a new lease if the old one expired meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from xdsr.model.group import LbnRecord
from xdsr.model.keys import lbn_key
from xdsr.store.base import Store, StoreError

log = logging.getLogger("xdsr.agent.registration")


class Registration:
    def __init__(self, store: Store, record: LbnRecord, ttl: int = 10, interval: float = 3.0) -> None:
        self.store = store
        self.record = record
        self.key = lbn_key(record.name)
        self.ttl = ttl
        self.interval = interval
        self.lease: int | None = None
        self.registered = False
        self._changed = asyncio.Event()

    async def _register(self) -> None:
        lease = await self.store.grant_lease(self.ttl)
        self.lease = lease
        await self._write(lease)
        self.registered = True
        log.info("registered key=%s lease=%x ttl=%ds endpoint=%s", self.key, lease, self.ttl, self.record.endpoint)

    async def run(self) -> None:
        """Register, keep alive, re-register; until cancelled."""
        outage = False
        while True:
            try:
                if self.lease is None:
                    await self._register()
                elif not await self.store.keep_alive(self.lease):
                    log.warning("lease %x expired: registering again", self.lease)
                    self.lease, self.registered = None, False
                    continue
                elif outage:
                    # The lease outlived the outage (etcd restarts keep
                    # leases); write the record again in case it went.
                    await self._write(self.lease)
                    self.registered = True
                    log.info("store is back: record kept on lease %x", self.lease)
                outage = False
            except StoreError as exc:
                if not outage:
                    log.warning("store unavailable, still serving and forwarding: %s", exc)
                outage = True
                self.registered = False
                await asyncio.sleep(1.0)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), self.interval)
            if self._changed.is_set():
                self._changed.clear()
                if self.lease is not None:
                    with contextlib.suppress(StoreError):
                        await self._write(self.lease)

    async def _write(self, lease: int) -> None:
        await self.store.put(self.key, self.record.model_dump_json().encode(), lease=lease)

    def update(self, **fields: object) -> None:
        """Change the record; written at once (by run()), on the same lease."""
        self.record = self.record.model_copy(update=fields)
        self._changed.set()

    async def close(self, timeout: float = 2.0) -> None:
        """Revoke the lease: the record goes at once, not after the TTL."""
        if self.lease is not None:
            try:
                await asyncio.wait_for(self.store.revoke_lease(self.lease), timeout)
                log.info("unregistered key=%s (lease %x revoked)", self.key, self.lease)
            except (StoreError, TimeoutError) as exc:
                log.warning("could not revoke lease %x (the record goes when it expires): %s", self.lease, exc)
            self.lease, self.registered = None, False
        with contextlib.suppress(Exception):
            await self.store.close()
