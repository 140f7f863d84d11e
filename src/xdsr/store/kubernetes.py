"""The Store on the Kubernetes API: keys are custom resources of xdsr.io/v1alpha1.

The control plane keeps running on the same small interface (base.Store);
this module maps it onto the API's conventions (docs/kubernetes.md):

- a key prefix is a kind (MAPPINGS): /xdsr/lb/ LoadBalancer (spec),
  /xdsr/status/ the same LoadBalancer's status subresource, /xdsr/groups/
  LBNGroup, /xdsr/rules/ LBNGroupRules (one per load balancer on a group),
  /xdsr/lbns/ LBNode; any other key is a StoreEntry (opaque bytes). The key
  itself is kept in the annotation xdsr.io/key, so names stay DNS-1123 even
  for keys that are not;
- a revision is a resourceVersion. kube-apiserver on etcd3 hands out etcd's
  revision, one increasing counter for every object, which is what the Store's
  revisions are; the store relies on that (it is true of every
  kube-apiserver, though clients are told to treat it as opaque);
- compare-and-swap is a PUT carrying metadata.resourceVersion (409 Conflict
  if it moved), a create (409 AlreadyExists) or a DELETE with
  preconditions.resourceVersion; an unconditional write reads and retries;
  every write names its field manager;
- watch from revision r is a watch from resourceVersion r-1 with bookmarks,
  resumed from the last resourceVersion seen when the server ends the stream;
  410 Gone (an ERROR event or the answer) is Compacted, so the informer lists
  again;
- a lease is a coordination.k8s.io Lease; a key put on a lease carries the
  label xdsr.io/lease and an ownerReference to it (the cluster's garbage
  collector deletes it if nobody else does). Stores started with
  reap_leases=True delete Leases that were not renewed for their duration,
  measured on their own clock from when they last saw the Lease change (as
  client-go's leader election does, so clock skew does not matter), and
  then the keys on them.

lightkube is the client: small, async, typed models for the built-in kinds
(Lease) and generic ones for custom resources, on httpx like the rest of xdsr.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import hashlib
import json
import logging
import os
import random
import re
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx2
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

from xdsr.model import keys
from xdsr.store.base import Compacted, Conflict, Event, Item, Put, StoreError, StoreUnavailable, put_each

log = logging.getLogger("xdsr.store.kubernetes")

GROUP = "xdsr.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KEY_ANNOTATION = "xdsr.io/key"
CREATED_ANNOTATION = "xdsr.io/create-revision"
LEASE_LABEL = "xdsr.io/lease"
GROUP_LABEL = "xdsr.io/group"
MANAGED_BY = {"app.kubernetes.io/managed-by": "xdsr"}
STORE_LEASE_LABELS = {**MANAGED_BY, "xdsr.io/lease-kind": "store"}


@dataclass(frozen=True)
class Mapping:
    """Where the keys under one prefix live: which kind, and which part of it."""

    prefix: str
    kind: str
    plural: str
    part: Literal["spec", "status", "data"]  # data: opaque bytes, base64 in spec.data


MAPPINGS = (
    Mapping(keys.LB_PREFIX, "LoadBalancer", "loadbalancers", "spec"),
    Mapping(keys.STATUS_PREFIX, "LoadBalancer", "loadbalancers", "status"),
    Mapping(keys.GROUP_PREFIX, "LBNGroup", "lbngroups", "spec"),
    Mapping(keys.RULES_PREFIX, "LBNGroupRules", "lbngrouprules", "spec"),
    Mapping(keys.LBN_PREFIX, "LBNode", "lbnodes", "spec"),
)
GENERIC = Mapping("", "StoreEntry", "storeentries", "data")
KINDS = {m.plural: m.kind for m in (*MAPPINGS, GENERIC)}

_resources = {
    plural: create_namespaced_resource(GROUP, VERSION, kind, plural, verbs=None) for plural, kind in KINDS.items()
}

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def mapping_of(key: str) -> Mapping:
    for m in MAPPINGS:
        if key.startswith(m.prefix):
            return m
    return GENERIC


def object_name(key: str) -> str:
    """The object's name for a key: readable where the key allows it."""
    m = mapping_of(key)
    rest = key[len(m.prefix) :].replace("/", ".")
    if m is not GENERIC and len(rest) <= 253 and _DNS_SUBDOMAIN.match(rest):
        return rest
    return "k-" + hashlib.sha256(key.encode()).hexdigest()[:40]


def _utcnow() -> datetime.datetime:
    # A MicroTime needs its six digits of fraction, and the encoder drops a zero fraction.
    now = datetime.datetime.now(datetime.UTC)
    return now if now.microsecond else now.replace(microsecond=1)


def _rv(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["resourceVersion"])


def _part(m: Mapping, obj: dict[str, Any]) -> bytes | None:
    """The key's value held in obj, or None if obj holds none (no status yet)."""
    if m.part == "data":
        return base64.b64decode((obj.get("spec") or {}).get("data") or "")
    doc = obj.get(m.part)
    if m.part == "status" and not doc:
        return None
    return json.dumps(doc if doc is not None else {}, separators=(",", ":"), sort_keys=True).encode()


def _encode(m: Mapping, value: bytes) -> dict[str, Any]:
    if m.part == "data":
        return {"data": base64.b64encode(value).decode()}
    doc = json.loads(value)
    if not isinstance(doc, dict):
        raise StoreError(f"{m.kind} {m.part} must be a JSON object")
    return doc


def _item(key: str, m: Mapping, obj: dict[str, Any]) -> Item | None:
    value = _part(m, obj)
    if value is None:
        return None
    annotations = obj["metadata"].get("annotations") or {}
    created = int(annotations.get(CREATED_ANNOTATION) or _rv(obj))
    return Item(key, value, _rv(obj), created)


def _key_of(obj: dict[str, Any]) -> str | None:
    return (obj.get("metadata", {}).get("annotations") or {}).get(KEY_ANNOTATION)


def in_cluster() -> bool:
    return "KUBERNETES_SERVICE_HOST" in os.environ


class KubernetesStore:
    """Store on one namespace of a Kubernetes API (see the module's docstring)."""

    def __init__(
        self,
        config: KubeConfig | None = None,
        *,
        namespace: str | None = None,
        field_manager: str = "xdsr",
        reap_leases: bool = True,
        reap_interval: float = 0.5,
        timeout: float = 10.0,
    ) -> None:
        self._config = config or KubeConfig.from_env()
        self.namespace = namespace or self._config.get().namespace or "xdsr"
        self.field_manager = field_manager
        self._client = AsyncClient(
            self._config, namespace=self.namespace, field_manager=field_manager, timeout=httpx2.Timeout(timeout)
        )
        self._timeout = timeout
        self._reap = reap_leases
        self._reap_interval = reap_interval
        self._reaper: asyncio.Task[None] | None = None
        self._lease_seen: dict[str, tuple[str, float]] = {}  # lease name -> (resourceVersion, when seen)
        self._lease_uid: dict[int, str] = {}
        self._leased_kinds: dict[int, set[str]] = {}  # per lease of ours, the kinds we put keys of on it
        self._closed = False
        self.watch_timeout = 300  # seconds the server keeps one watch request open; then it is resumed

    @classmethod
    def from_spec(cls, spec: str, **kwargs: Any) -> KubernetesStore:
        """`kubernetes` (in-cluster, else $KUBECONFIG or ~/.kube/config) or `kubernetes:PATH` (a kubeconfig)."""
        _, _, path = spec.partition(":")
        config = KubeConfig.from_file(path) if path else KubeConfig.from_env()
        return cls(config, **kwargs)

    # --- plumbing ---

    async def _request(
        self,
        method: str,
        plural: str,
        name: str | None = None,
        body: dict[str, Any] | None = None,
        status: bool = False,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One API call, as JSON; ApiError for answers other than 2xx."""
        res = _resources[plural].Status if status else _resources[plural]
        generic = self._client._client  # lightkube's request builder: DELETE with a body, raw JSON back
        method = {"POST": "post", "PUT": "put", "GET": "get" if name else "list", "DELETE": "delete"}[method]
        params = dict(params or {})
        if method in ("post", "put"):
            params.setdefault("fieldManager", self.field_manager)
        obj = _resources[plural].from_dict(body) if (body is not None and method in ("post", "put")) else None
        br = generic.prepare_request(method, res=res, obj=obj, name=name, namespace=self.namespace, params=params)
        if method == "delete" and body is not None:
            br.data = body
        try:
            resp = await generic.send(generic.build_adapter_request(br))
            generic.raise_for_status(resp)
        except ApiError:
            raise
        except httpx2.HTTPError as exc:
            raise StoreUnavailable(f"Kubernetes API: {exc.__class__.__name__}: {exc}") from exc
        return resp.json()  # type: ignore[no-any-return]

    async def _get_obj(self, plural: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._request("GET", plural, name)
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise StoreUnavailable(f"Kubernetes API: {exc}") from exc

    def _start_reaper(self) -> None:
        if self._reap and self._reaper is None and not self._closed:
            self._reaper = asyncio.get_running_loop().create_task(self._reap_loop())

    # --- reading ---

    async def get(self, key: str) -> Item | None:
        self._start_reaper()
        m = mapping_of(key)
        obj = await self._get_obj(m.plural, object_name(key))
        if obj is None or _key_of(obj) != (keys.lb_key(key[len(m.prefix) :]) if m.part == "status" else key):
            return None
        return _item(key, m, obj)

    def _mappings_for(self, prefix: str) -> list[Mapping]:
        covered = [m for m in MAPPINGS if m.prefix.startswith(prefix) or prefix.startswith(m.prefix)]
        if not covered or not all(prefix.startswith(m.prefix) for m in covered):
            covered.append(GENERIC)
        return covered

    async def _list_kind(self, plural: str, labels: dict[str, str] | None = None) -> tuple[list[dict[str, Any]], int]:
        params: dict[str, Any] = {"limit": 500}
        if labels:
            params["labelSelector"] = ",".join(f"{k}={v}" for k, v in labels.items())
        objs: list[dict[str, Any]] = []
        rev = 0
        while True:
            try:
                out = await self._request("GET", plural, params=params)
            except ApiError as exc:
                raise StoreUnavailable(f"Kubernetes API: list {plural}: {exc}") from exc
            objs.extend(out.get("items") or [])
            rev = rev or int(out["metadata"]["resourceVersion"])
            cont = out["metadata"].get("continue")
            if not cont:
                return objs, rev
            params["continue"] = cont

    async def list(self, prefix: str) -> tuple[list[Item], int]:
        self._start_reaper()
        items: list[Item] = []
        revs = []
        for m in self._mappings_for(prefix):
            objs, rev = await self._list_kind(m.plural)
            revs.append(rev)
            for obj in objs:
                key = self._key_in(m, obj)
                if key is not None and key.startswith(prefix):
                    item = _item(key, m, obj)
                    if item is not None:
                        items.append(item)
        # Several kinds are several lists: a watch from the oldest misses nothing.
        return sorted(items, key=lambda i: i.key), min(revs)

    @staticmethod
    def _key_in(m: Mapping, obj: dict[str, Any]) -> str | None:
        key = _key_of(obj)
        if key is None:
            return None
        if m.part == "status":
            return keys.status_key(key[len(keys.LB_PREFIX) :]) if key.startswith(keys.LB_PREFIX) else None
        return key if mapping_of(key) == m else None

    # --- writing ---

    def _object(self, key: str, m: Mapping, value: bytes, lease: int | None, base: dict[str, Any] | None) -> dict:
        meta: dict[str, Any] = dict((base or {}).get("metadata") or {})
        meta.pop("managedFields", None)
        annotations = dict(meta.get("annotations") or {})
        annotations[KEY_ANNOTATION] = key
        if base is not None and CREATED_ANNOTATION not in annotations and (base["metadata"].get("generation") == 1):
            annotations[CREATED_ANNOTATION] = base["metadata"]["resourceVersion"]
        labels = {k: v for k, v in (meta.get("labels") or {}).items() if k != LEASE_LABEL}
        labels.update(MANAGED_BY)
        if m.plural == "lbngrouprules":
            labels[GROUP_LABEL] = keys.rules_parts(key)[0]
        owners = [o for o in meta.get("ownerReferences") or [] if o.get("kind") != "Lease"]
        if lease:
            labels[LEASE_LABEL] = f"{lease:016x}"
            owners.append({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "name": _lease_name(lease),
                           "uid": self._lease_uid[lease], "blockOwnerDeletion": False})  # fmt: skip
        meta.update(name=object_name(key), namespace=self.namespace, annotations=annotations, labels=labels)
        meta["ownerReferences"] = owners
        obj: dict[str, Any] = {"apiVersion": API_VERSION, "kind": m.kind, "metadata": meta}
        obj["spec"] = _encode(m, value) if m.part != "status" else (base or {}).get("spec", {})
        if base is not None and "status" in base:
            obj["status"] = base["status"]
        return obj

    async def put(self, key: str, value: bytes, *, expect: int | None = None, lease: int | None = None) -> int:
        self._start_reaper()
        m = mapping_of(key)
        if lease:
            await self._lease_known(lease)
            self._leased_kinds.setdefault(lease, set()).add(m.plural)
        if m.part == "status":
            return await self._put_status(key, value, expect)
        name = object_name(key)
        while True:
            current = await self._get_obj(m.plural, name) if expect != 0 else None
            if expect is not None and expect != 0:
                actual = _rv(current) if current is not None else 0
                if actual != expect:
                    raise Conflict(key, expect, actual)
            try:
                if current is None:
                    out = await self._request("POST", m.plural, body=self._object(key, m, value, lease, None))
                else:
                    out = await self._request("PUT", m.plural, name, body=self._object(key, m, value, lease, current))
                return _rv(out)
            except ApiError as exc:
                if exc.status.code not in (404, 409):
                    raise StoreUnavailable(f"Kubernetes API: write {key}: {exc}") from exc
                if expect is not None:  # the object moved under us: the compare failed
                    now = await self._get_obj(m.plural, name)
                    raise Conflict(key, expect, _rv(now) if now is not None else 0) from exc
                # unconditional: someone wrote in between; read again and write over it

    async def put_many(self, puts: Sequence[Put]) -> list[int | Conflict]:
        # The API writes one object per request: the puts go side by side.
        return await put_each(self, puts)

    async def _put_status(self, key: str, value: bytes | None, expect: int | None) -> int:
        m = mapping_of(key)
        lb = keys.lb_key(key[len(m.prefix) :])
        name = object_name(lb)
        while True:
            current = await self._get_obj(m.plural, name)
            if current is None:
                if expect is None and value is None:
                    return 0
                # The status of an absent load balancer has nowhere to live.
                raise Conflict(key, -1 if expect is None else expect, 0)
            has = bool(current.get("status"))
            actual = _rv(current) if has else 0
            if expect is not None and actual != expect:
                raise Conflict(key, expect, actual)
            if value is None and not has:
                return 0
            body = {k: v for k, v in current.items() if k != "status"}
            if value is not None:
                body["status"] = _encode(m, value)
            try:
                out = await self._request("PUT", m.plural, name, body=body, status=True)
                return _rv(out)
            except ApiError as exc:
                if exc.status.code not in (404, 409):
                    raise StoreUnavailable(f"Kubernetes API: write {key}: {exc}") from exc
                if expect is not None:
                    raise Conflict(key, expect, -1) from exc

    async def delete(self, key: str, *, expect: int | None = None) -> int:
        self._start_reaper()
        m = mapping_of(key)
        if m.part == "status":
            return await self._put_status(key, None, expect)
        name = object_name(key)
        if expect == 0:
            current = await self._get_obj(m.plural, name)
            if current is not None:
                raise Conflict(key, 0, _rv(current))
            return 0
        body = None
        if expect is not None:
            body = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"resourceVersion": str(expect)}}
        try:
            out = await self._request("DELETE", m.plural, name, body=body)
        except ApiError as exc:
            if exc.status.code == 404:
                if expect is not None:
                    raise Conflict(key, expect, 0) from exc
                return 0
            if exc.status.code == 409 and expect is not None:
                now = await self._get_obj(m.plural, name)
                raise Conflict(key, expect, _rv(now) if now is not None else 0) from exc
            raise StoreUnavailable(f"Kubernetes API: delete {key}: {exc}") from exc
        # kube-apiserver answers with the object at the deletion's resourceVersion
        # (a Status only for kinds that do not return the object).
        return int((out.get("metadata") or {}).get("resourceVersion") or 0)

    # --- watching ---

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[Event]:  # type: ignore[override]
        self._start_reaper()
        kinds = self._mappings_for(prefix)
        if len(kinds) != 1:
            raise StoreError(f"{prefix!r} spans {len(kinds)} kinds: watch each kind's prefix")
        m = kinds[0]
        generic = self._client._client
        params: dict[str, Any] = {"allowWatchBookmarks": "true", "resourceVersion": str(max(start_revision - 1, 0))}
        if start_revision <= 1:
            params["resourceVersion"] = "1"
        last: dict[str, bytes] = {}  # per key, the value last sent (spec and status share one object)
        version = params["resourceVersion"]
        while True:
            params["resourceVersion"] = version
            br = generic.prepare_request("list", res=_resources[m.plural], namespace=self.namespace, watch=True,
                                         params=dict(params, timeoutSeconds=self.watch_timeout))  # fmt: skip
            # The server ends the stream after timeoutSeconds; silence well past that is a dead connection.
            br.timeout = httpx2.Timeout(self._timeout, read=self.watch_timeout + 30)
            req = generic.build_adapter_request(br)
            try:
                resp = await generic.send(req, stream=True)
                try:
                    if resp.status_code == 410:
                        raise Compacted(start_revision, 0)
                    if resp.status_code != 200:
                        await resp.aread()
                        raise StoreUnavailable(f"Kubernetes API: watch {m.plural}: HTTP {resp.status_code}")
                    async for line in resp.aiter_lines():
                        if not line.strip():
                            continue
                        ev = json.loads(line)
                        obj = ev.get("object") or {}
                        if ev["type"] == "ERROR":
                            if obj.get("code") == 410:
                                raise Compacted(start_revision, 0)
                            raise StoreUnavailable(f"Kubernetes API: watch {m.plural}: {obj.get('message')}")
                        version = obj["metadata"]["resourceVersion"]
                        if ev["type"] == "BOOKMARK":
                            continue  # only moves where a resumed watch starts
                        out = self._event(m, prefix, ev["type"], obj, last)
                        if out is not None:
                            yield out
                finally:
                    await resp.aclose()
            except httpx2.HTTPError as exc:
                raise StoreUnavailable(f"Kubernetes API: watch {m.plural}: {exc.__class__.__name__}: {exc}") from exc
            # The server ended the stream (timeoutSeconds): resume where we were.

    def _event(self, m: Mapping, prefix: str, type_: str, obj: dict[str, Any], last: dict[str, bytes]) -> Event | None:
        key = self._key_in(m, obj)
        if key is None or not key.startswith(prefix):
            return None
        rev = _rv(obj)
        if type_ == "DELETED":
            if m.part == "status" and key not in last and not obj.get("status"):
                return None  # a load balancer that never had a status
            last.pop(key, None)
            return Event("delete", key, b"", rev)
        value = _part(m, obj)
        if value is None:  # the status was removed (or is not there yet)
            return Event("delete", key, b"", rev) if last.pop(key, None) is not None else None
        if m.kind == "LoadBalancer" and last.get(key) == value:
            return None  # the other half of the object changed
        last[key] = value
        return Event("put", key, value, rev)

    # --- leases ---

    async def _lease_known(self, lease: int) -> None:
        if lease in self._lease_uid:
            return
        try:
            got = await self._client.get(Lease, _lease_name(lease), namespace=self.namespace)
        except ApiError as exc:
            raise StoreUnavailable(f"lease {lease:x} not found") from exc
        assert got.metadata is not None and got.metadata.uid is not None
        self._lease_uid[lease] = got.metadata.uid

    async def grant_lease(self, ttl: int) -> int:
        self._start_reaper()
        lease = random.getrandbits(63) or 1
        body = Lease(
            metadata=ObjectMeta(name=_lease_name(lease), namespace=self.namespace, labels=dict(STORE_LEASE_LABELS)),
            spec=LeaseSpec(
                holderIdentity=_identity(), leaseDurationSeconds=ttl, acquireTime=_utcnow(), renewTime=_utcnow()
            ),
        )
        try:
            out = await self._client.create(body, namespace=self.namespace)
        except ApiError as exc:
            raise StoreUnavailable(f"Kubernetes API: create lease: {exc}") from exc
        except httpx2.HTTPError as exc:
            raise StoreUnavailable(f"Kubernetes API: {exc.__class__.__name__}: {exc}") from exc
        assert out.metadata is not None and out.metadata.uid is not None
        self._lease_uid[lease] = out.metadata.uid
        return lease

    async def keep_alive(self, lease: int) -> bool:
        try:
            got = await self._client.get(Lease, _lease_name(lease), namespace=self.namespace)
            assert got.spec is not None
            got.spec.renewTime = _utcnow()
            await self._client.replace(got, namespace=self.namespace)
            return True
        except ApiError as exc:
            if exc.status.code == 404:
                return False
            if exc.status.code == 409:  # renewed or ended meanwhile: ask again
                return await self.keep_alive(lease)
            raise StoreUnavailable(f"Kubernetes API: renew lease: {exc}") from exc
        except httpx2.HTTPError as exc:
            raise StoreUnavailable(f"Kubernetes API: {exc.__class__.__name__}: {exc}") from exc

    async def revoke_lease(self, lease: int) -> None:
        with contextlib.suppress(ApiError):
            await self._client.delete(Lease, _lease_name(lease), namespace=self.namespace)
        # Only the kinds this store put on it: an agent may not even list the others.
        await self._delete_leased(lease, self._leased_kinds.pop(lease, set()))

    async def _delete_leased(self, lease: int, kinds: set[str] | None = None) -> None:
        """The keys on a lease that ended (the garbage collector would too, later)."""
        every = dict.fromkeys(m.plural for m in (*MAPPINGS, GENERIC))
        for plural in every if kinds is None else [k for k in every if k in kinds]:
            objs, _ = await self._list_kind(plural, {LEASE_LABEL: f"{lease:016x}"})
            for obj in objs:
                body = {"kind": "DeleteOptions", "apiVersion": "v1",
                        "preconditions": {"resourceVersion": obj["metadata"]["resourceVersion"]}}  # fmt: skip
                with contextlib.suppress(ApiError):  # rewritten meanwhile (a new lease) or gone
                    await self._request("DELETE", plural, obj["metadata"]["name"], body=body)

    async def _reap_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closed:
            try:
                await self.reap_expired(loop.time())
            except (StoreError, ApiError, httpx2.HTTPError) as exc:
                log.debug("lease reaper: %s", exc)
            await asyncio.sleep(self._reap_interval)

    async def reap_expired(self, now: float) -> None:
        """End the leases not renewed for their duration, as this store saw them."""
        seen: dict[str, tuple[str, float]] = {}
        async for got in self._client.list(Lease, namespace=self.namespace, labels=STORE_LEASE_LABELS):
            assert got.metadata is not None and got.spec is not None
            name, rv = got.metadata.name or "", got.metadata.resourceVersion or ""
            before = self._lease_seen.get(name)
            since = before[1] if before is not None and before[0] == rv else now
            seen[name] = (rv, since)
            if now - since < (got.spec.leaseDurationSeconds or 0):
                continue
            try:
                await self._delete_lease(name, rv)
            except ApiError:
                continue  # renewed meanwhile
            await self._delete_leased(int(name.removeprefix("xdsr-lease-"), 16))
            seen.pop(name, None)
        self._lease_seen = seen

    async def _delete_lease(self, name: str, rv: str) -> None:
        generic = self._client._client
        br = generic.prepare_request("delete", res=Lease, name=name, namespace=self.namespace)
        br.data = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"resourceVersion": rv}}
        resp = await generic.send(generic.build_adapter_request(br))
        generic.raise_for_status(resp)

    async def close(self) -> None:
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reaper
        await self._client.close()


def _lease_name(lease: int) -> str:
    return f"xdsr-lease-{lease:016x}"


def _identity() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"
