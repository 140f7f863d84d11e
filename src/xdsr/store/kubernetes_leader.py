"""Leadership on the Kubernetes API: one coordination.k8s.io Lease, as
client-go's leader election holds it (`xdsr operator --leader-elect`: of
several operator replicas, one acts)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import httpx2
from lightkube import ApiError
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

from xdsr.store.kubernetes import MANAGED_BY, KubernetesStore, _identity, _utcnow

log = logging.getLogger("xdsr.store.kubernetes")


class LeaderElection:
    """Leadership held on one coordination.k8s.io Lease, as client-go does it.

    A candidate takes the Lease when it is absent, or when its holder did not
    renew it for leaseDurationSeconds as this candidate saw it (its own
    clock: no trust in the holder's). Every take and renewal is a PUT on the
    Lease's resourceVersion, so of two candidates exactly one wins. The leader
    gives up (lead() returns) when it could not renew for renew_deadline,
    which is shorter than the duration: it stops acting before anyone else
    may start.
    """

    def __init__(
        self,
        store: KubernetesStore,
        name: str,
        identity: str | None = None,
        duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry: float = 2.0,
    ) -> None:
        self.store = store
        self.name = name
        self.identity = identity or _identity()
        self.duration, self.renew_deadline, self.retry = duration, renew_deadline, retry
        self._seen: tuple[str, float] | None = None  # (resourceVersion, when this candidate saw it change)

    async def _try(self) -> bool:
        client, ns = self.store._client, self.store.namespace
        now = asyncio.get_running_loop().time()
        try:
            got = await client.get(Lease, self.name, namespace=ns)
        except ApiError as exc:
            if exc.status.code != 404:
                raise
            body = Lease(
                metadata=ObjectMeta(name=self.name, namespace=ns, labels=dict(MANAGED_BY)),
                spec=LeaseSpec(
                    holderIdentity=self.identity,
                    leaseDurationSeconds=int(self.duration),
                    acquireTime=_utcnow(),
                    renewTime=_utcnow(),
                    leaseTransitions=0,
                ),
            )
            try:
                await client.create(body, namespace=ns)
            except ApiError:
                return False
            return True
        assert got.metadata is not None and got.spec is not None
        rv = got.metadata.resourceVersion or ""
        if self._seen is None or self._seen[0] != rv:
            self._seen = (rv, now)
        mine = got.spec.holderIdentity == self.identity
        if not mine and got.spec.holderIdentity and now - self._seen[1] < (got.spec.leaseDurationSeconds or 0):
            return False
        if not mine:
            got.spec.holderIdentity = self.identity
            got.spec.acquireTime = _utcnow()
            got.spec.leaseTransitions = (got.spec.leaseTransitions or 0) + 1
            got.spec.leaseDurationSeconds = int(self.duration)
        got.spec.renewTime = _utcnow()
        try:
            out = await client.replace(got, namespace=ns)
        except ApiError:
            return False  # someone else wrote it first
        assert out.metadata is not None
        self._seen = (out.metadata.resourceVersion or "", now)
        return True

    async def acquire(self) -> None:
        """Until this candidate holds the Lease."""
        while True:
            try:
                if await self._try():
                    log.info("%s: leader (%s)", self.name, self.identity)
                    return
            except (ApiError, httpx2.HTTPError) as exc:
                log.warning("%s: leader election: %s", self.name, exc)
            await asyncio.sleep(self.retry)

    async def hold(self) -> None:
        """Renew the Lease; return when it could not be renewed for renew_deadline."""
        loop = asyncio.get_running_loop()
        renewed = loop.time()
        while True:
            await asyncio.sleep(self.retry)
            try:
                if await self._try():
                    renewed = loop.time()
                    continue
            except (ApiError, httpx2.HTTPError) as exc:
                log.warning("%s: renewing leadership: %s", self.name, exc)
            if loop.time() - renewed > self.renew_deadline:
                log.error("%s: leadership lost", self.name)
                return

    async def release(self) -> None:
        """Hand the Lease over at once (a clean shutdown): the holder empties it."""
        with contextlib.suppress(ApiError, httpx2.HTTPError):
            got = await self.store._client.get(Lease, self.name, namespace=self.store.namespace)
            assert got.spec is not None
            if got.spec.holderIdentity == self.identity:
                got.spec.holderIdentity = None
                await self.store._client.replace(got, namespace=self.store.namespace)

    async def lead(self, work: Any) -> bool:
        """Acquire, then run the coroutine work while holding; False if leadership was lost."""
        await self.acquire()
        task = asyncio.ensure_future(work)
        holder = asyncio.ensure_future(self.hold())
        try:
            done, _ = await asyncio.wait({task, holder}, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                task.result()
                return True
            return False
        finally:
            for t in (task, holder):
                t.cancel()
            for t in (task, holder):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            await self.release()
