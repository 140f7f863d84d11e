"""A thin ctypes binding to libbpf (Debian's libbpf1, API 1.x).

Only what xdsr needs: open and load an object with pinned maps, attach XDP,
create maps, read and write elements (singly and in batches), pin, and
BPF_PROG_TEST_RUN. Every failing call raises BpfError with the errno and the
operation, so callers never check return codes.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import logging
import mmap
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

log = logging.getLogger("xdsr.libbpf")

# Values from linux/bpf.h and linux/if_link.h.
BPF_MAP_TYPE_HASH = 1
BPF_MAP_TYPE_ARRAY = 2
BPF_MAP_TYPE_PERCPU_HASH = 5
BPF_MAP_TYPE_PERCPU_ARRAY = 6
BPF_MAP_TYPE_ARRAY_OF_MAPS = 12
BPF_MAP_TYPE_HASH_OF_MAPS = 13

BPF_ANY = 0
BPF_NOEXIST = 1
BPF_EXIST = 2
BPF_F_NO_PREALLOC = 1 << 0
BPF_F_RDONLY_PROG = 1 << 8
BPF_F_INNER_MAP = 1 << 12
BPF_F_MMAPABLE = 1 << 10

BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1

XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_FLAGS_REPLACE = 1 << 4

XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT = range(5)
XDP_ACTION_NAMES = {0: "XDP_ABORTED", 1: "XDP_DROP", 2: "XDP_PASS", 3: "XDP_TX", 4: "XDP_REDIRECT"}

BPF_OBJ_NAME_LEN = 16


class BpfError(OSError):
    """A libbpf or bpf() call failed."""

    def __init__(self, err: int, what: str, detail: str = "") -> None:
        msg = f"{what}: {os.strerror(err)}"
        if detail:
            msg += f"\n{detail}"
        super().__init__(err, msg)
        self.what = what
        self.detail = detail

    def __str__(self) -> str:
        return self.args[1]


class _MapCreateOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("btf_fd", ctypes.c_uint32),
        ("btf_key_type_id", ctypes.c_uint32),
        ("btf_value_type_id", ctypes.c_uint32),
        ("btf_vmlinux_value_type_id", ctypes.c_uint32),
        ("inner_map_fd", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("map_extra", ctypes.c_uint64),
        ("numa_node", ctypes.c_uint32),
        ("map_ifindex", ctypes.c_uint32),
    ]


class _TestRunOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("data_in", ctypes.c_void_p),
        ("data_out", ctypes.c_void_p),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_void_p),
        ("ctx_out", ctypes.c_void_p),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("repeat", ctypes.c_int),
        ("duration", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    ]


class _XdpAttachOpts(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t), ("old_prog_fd", ctypes.c_int)]


class _BatchOpts(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t), ("elem_flags", ctypes.c_uint64), ("flags", ctypes.c_uint64)]


class _MapInfo(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("ifindex", ctypes.c_uint32),
        ("btf_vmlinux_value_type_id", ctypes.c_uint32),
        ("netns_dev", ctypes.c_uint64),
        ("netns_ino", ctypes.c_uint64),
        ("btf_id", ctypes.c_uint32),
        ("btf_key_type_id", ctypes.c_uint32),
        ("btf_value_type_id", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
        ("map_extra", ctypes.c_uint64),
    ]


class _ProgInfoHead(ctypes.Structure):
    # The first fields of struct bpf_prog_info, up to its map ids; the kernel
    # fills only as much as we ask for.
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", ctypes.c_uint32),
        ("xlated_prog_len", ctypes.c_uint32),
        ("jited_prog_insns", ctypes.c_uint64),
        ("xlated_prog_insns", ctypes.c_uint64),
        ("load_time", ctypes.c_uint64),
        ("created_by_uid", ctypes.c_uint32),
        ("nr_map_ids", ctypes.c_uint32),
        ("map_ids", ctypes.c_uint64),
    ]


_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)


def _load() -> ctypes.CDLL:
    name = ctypes.util.find_library("bpf") or "libbpf.so.1"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as exc:  # pragma: no cover - depends on the machine
        raise RuntimeError(f"cannot load libbpf ({name}): install Debian's libbpf1 (scripts/install.sh does)") from exc
    vp, ci, cu, cs = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32, ctypes.c_char_p
    sigs: dict[str, tuple[object, list[object]]] = {
        "libbpf_set_print": (vp, [_PRINT_FN]),
        "bpf_object__open_file": (vp, [cs, vp]),
        "bpf_object__load": (ci, [vp]),
        "bpf_object__close": (None, [vp]),
        "bpf_object__find_map_by_name": (vp, [vp, cs]),
        "bpf_object__find_program_by_name": (vp, [vp, cs]),
        "bpf_map__set_pin_path": (ci, [vp, cs]),
        "bpf_map__set_max_entries": (ci, [vp, cu]),
        "bpf_map__set_initial_value": (ci, [vp, vp, ctypes.c_size_t]),
        "bpf_map__set_inner_map_fd": (ci, [vp, ci]),
        "bpf_map__fd": (ci, [vp]),
        "bpf_program__fd": (ci, [vp]),
        "bpf_program__set_autoload": (ci, [vp, ctypes.c_bool]),
        "bpf_xdp_attach": (ci, [ci, ci, cu, vp]),
        "bpf_xdp_detach": (ci, [ci, cu, vp]),
        "bpf_xdp_query_id": (ci, [ci, ci, ctypes.POINTER(cu)]),
        "bpf_obj_pin": (ci, [ci, cs]),
        "bpf_obj_get": (ci, [cs]),
        "bpf_map_create": (ci, [ci, cs, cu, cu, cu, vp]),
        "bpf_map_update_elem": (ci, [ci, vp, vp, ctypes.c_uint64]),
        "bpf_map_lookup_elem": (ci, [ci, vp, vp]),
        "bpf_map_delete_elem": (ci, [ci, vp]),
        "bpf_map_get_next_key": (ci, [ci, vp, vp]),
        "bpf_map_update_batch": (ci, [ci, vp, vp, ctypes.POINTER(cu), vp]),
        "bpf_map_delete_batch": (ci, [ci, vp, ctypes.POINTER(cu), vp]),
        "bpf_map_lookup_batch": (ci, [ci, vp, vp, vp, vp, ctypes.POINTER(cu), vp]),
        "bpf_map_get_fd_by_id": (ci, [cu]),
        "bpf_prog_get_fd_by_id": (ci, [cu]),
        "bpf_obj_get_info_by_fd": (ci, [ci, vp, ctypes.POINTER(cu)]),
        "bpf_prog_test_run_opts": (ci, [ci, vp]),
        "libbpf_num_possible_cpus": (ci, []),
    }
    for fn, (res, args) in sigs.items():
        f = getattr(lib, fn)
        f.restype = res
        f.argtypes = args
    return lib


_lib = _load()
_libc = ctypes.CDLL(None)
_libc.vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]

# libbpf prints through a callback taking a va_list; format it with the C
# library so messages (the verifier log above all) reach Python logging.
_captured: list[str] | None = None


@_PRINT_FN
def _print(level: int, fmt: bytes, args: int) -> int:
    buf = ctypes.create_string_buffer(4096)
    _libc.vsnprintf(buf, len(buf), fmt, args)
    text = buf.value.decode(errors="replace").rstrip("\n")
    if _captured is not None:
        _captured.append(text)
    log.log(logging.WARNING if level == 0 else logging.DEBUG, "%s", text)
    return 0


_lib.libbpf_set_print(_print)


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno() or -ret
        raise BpfError(err, what)
    return ret


def possible_cpus() -> int:
    return _check(_lib.libbpf_num_possible_cpus(), "libbpf_num_possible_cpus")


def _ptr(buf: ctypes.Array | None) -> int | None:
    return ctypes.addressof(buf) if buf is not None else None


@dataclass(frozen=True)
class MapInfo:
    id: int
    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    name: str


class Fd:
    """An owned file descriptor of a BPF object, closed on close() or GC."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self) -> None:
        with contextlib.suppress(OSError):
            self.close()

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def pin(self, path: str) -> None:
        _check(_lib.bpf_obj_pin(self.fd, path.encode()), f"pin {path}")


class Map(Fd):
    """A BPF map with fixed key and value sizes; keys and values are bytes."""

    def __init__(self, fd: int, info: MapInfo | None = None) -> None:
        super().__init__(fd)
        self.info = info or map_info(fd)
        self.key_size = self.info.key_size
        self.value_size = self.info.value_size
        if self.info.type in (BPF_MAP_TYPE_PERCPU_ARRAY, BPF_MAP_TYPE_PERCPU_HASH):
            # Per-CPU values are read and written as one buffer holding a
            # value per possible CPU, each rounded up to 8 bytes.
            self.value_size = ((self.info.value_size + 7) // 8 * 8) * possible_cpus()
        elif self.info.type in (BPF_MAP_TYPE_ARRAY_OF_MAPS, BPF_MAP_TYPE_HASH_OF_MAPS):
            self.value_size = 4  # in: an fd to store; out: the inner map's id

    @classmethod
    def from_pin(cls, path: str) -> Map:
        return cls(_check(_lib.bpf_obj_get(path.encode()), f"open pinned map {path}"))

    @classmethod
    def from_id(cls, map_id: int) -> Map:
        return cls(_check(_lib.bpf_map_get_fd_by_id(map_id), f"open map id {map_id}"))

    @classmethod
    def create(
        cls,
        map_type: int,
        name: str,
        key_size: int,
        value_size: int,
        max_entries: int,
        flags: int = 0,
        inner_map_fd: int = 0,
    ) -> Map:
        opts = _MapCreateOpts(sz=ctypes.sizeof(_MapCreateOpts), map_flags=flags, inner_map_fd=inner_map_fd)
        fd = _lib.bpf_map_create(
            map_type, name.encode()[: BPF_OBJ_NAME_LEN - 1], key_size, value_size, max_entries, ctypes.byref(opts)
        )
        return cls(_check(fd, f"create map {name} ({max_entries} x {value_size} bytes)"))

    def _kbuf(self, key: bytes) -> ctypes.Array:
        if len(key) != self.key_size:
            raise ValueError(f"{self.info.name}: key of {len(key)} bytes, want {self.key_size}")
        return ctypes.create_string_buffer(key, self.key_size)

    def lookup(self, key: bytes) -> bytes | None:
        out = ctypes.create_string_buffer(self.value_size)
        ret = _lib.bpf_map_lookup_elem(self.fd, self._kbuf(key), out)
        if ret < 0:
            err = ctypes.get_errno()
            if err == errno.ENOENT:
                return None
            raise BpfError(err, f"lookup in {self.info.name}")
        return out.raw

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        if len(value) != self.value_size:
            raise ValueError(f"{self.info.name}: value of {len(value)} bytes, want {self.value_size}")
        vbuf = ctypes.create_string_buffer(value, self.value_size)
        _check(_lib.bpf_map_update_elem(self.fd, self._kbuf(key), vbuf, flags), f"update {self.info.name}")

    def delete(self, key: bytes) -> bool:
        ret = _lib.bpf_map_delete_elem(self.fd, self._kbuf(key))
        if ret < 0:
            err = ctypes.get_errno()
            if err == errno.ENOENT:
                return False
            raise BpfError(err, f"delete from {self.info.name}")
        return True

    def keys(self) -> Iterator[bytes]:
        cur: ctypes.Array | None = None
        nxt = ctypes.create_string_buffer(self.key_size)
        while True:
            ret = _lib.bpf_map_get_next_key(self.fd, _ptr(cur), nxt)
            if ret < 0:
                err = ctypes.get_errno()
                if err == errno.ENOENT:
                    return
                raise BpfError(err, f"iterate {self.info.name}")
            yield nxt.raw
            cur = ctypes.create_string_buffer(nxt.raw, self.key_size)

    def percpu_sums(self) -> dict[bytes, int]:
        """key -> the sum over CPUs of a per-CPU map of u64 counters."""
        if self.info.type not in (BPF_MAP_TYPE_PERCPU_ARRAY, BPF_MAP_TYPE_PERCPU_HASH) or self.info.value_size != 8:
            raise ValueError(f"{self.info.name} is not a per-CPU map of u64 values")
        sums = {}
        for key in self.keys():
            raw = self.lookup(key)
            if raw is not None:
                sums[key] = sum(struct.unpack(f"={len(raw) // 8}Q", raw))
        return sums

    def update_batch(self, keys: bytes, values: bytes, count: int) -> None:
        """Write count elements in one syscall; keys and values are packed."""
        if len(keys) != count * self.key_size or len(values) != count * self.value_size:
            raise ValueError(f"{self.info.name}: batch buffers do not match {count} elements")
        n = ctypes.c_uint32(count)
        opts = _BatchOpts(sz=ctypes.sizeof(_BatchOpts))
        kb = ctypes.create_string_buffer(keys, len(keys))
        vb = ctypes.create_string_buffer(values, len(values))
        _check(
            _lib.bpf_map_update_batch(self.fd, kb, vb, ctypes.byref(n), ctypes.byref(opts)),
            f"batch update {self.info.name} ({count} elements)",
        )

    def delete_batch(self, keys: bytes, count: int) -> None:
        """Delete count elements (all must exist) in one syscall."""
        if len(keys) != count * self.key_size:
            raise ValueError(f"{self.info.name}: batch buffer does not match {count} keys")
        n = ctypes.c_uint32(count)
        opts = _BatchOpts(sz=ctypes.sizeof(_BatchOpts))
        kb = ctypes.create_string_buffer(keys, len(keys))
        _check(
            _lib.bpf_map_delete_batch(self.fd, kb, ctypes.byref(n), ctypes.byref(opts)),
            f"batch delete from {self.info.name} ({count} elements)",
        )

    def values_batch(self) -> bytes:
        """Every value of an array, in key order, in as few syscalls as the
        kernel allows (one read of a per-CPU array instead of one per key)."""
        total = self.info.max_entries
        out = ctypes.create_string_buffer(total * self.value_size)
        keys = ctypes.create_string_buffer(total * self.key_size)
        token_in: ctypes.Array | None = None
        token_out = ctypes.create_string_buffer(self.key_size)
        done = 0
        while done < total:
            n = ctypes.c_uint32(total - done)
            opts = _BatchOpts(sz=ctypes.sizeof(_BatchOpts))
            ret = _lib.bpf_map_lookup_batch(
                self.fd,
                _ptr(token_in),
                token_out,
                ctypes.byref(keys, done * self.key_size),
                ctypes.byref(out, done * self.value_size),
                ctypes.byref(n),
                ctypes.byref(opts),
            )
            err = (ctypes.get_errno() or -ret) if ret < 0 else 0
            done += n.value
            if ret < 0 and err == errno.ENOENT:
                break  # the last batch
            _check(ret, f"batch lookup in {self.info.name}")
            token_in = ctypes.create_string_buffer(token_out.raw, self.key_size)
        return out.raw[: done * self.value_size]

    def mmap(self, writable: bool = True) -> mmap.mmap:
        """The values of a BPF_F_MMAPABLE array, mapped into this process."""
        elem = (self.info.value_size + 7) // 8 * 8
        page = mmap.PAGESIZE
        length = (self.info.max_entries * elem + page - 1) // page * page
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
        return mmap.mmap(self.fd, length, flags=mmap.MAP_SHARED, prot=prot)

    def memlock(self) -> int:
        """Bytes the kernel charges for this map (from /proc/self/fdinfo)."""
        with open(f"/proc/self/fdinfo/{self.fd}") as f:
            for line in f:
                if line.startswith("memlock:"):
                    return int(line.split()[1])
        return 0


def map_info(fd: int) -> MapInfo:
    info = _MapInfo()
    size = ctypes.c_uint32(ctypes.sizeof(info))
    _check(_lib.bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)), "map info")
    return MapInfo(
        id=info.id,
        type=info.type,
        key_size=info.key_size,
        value_size=info.value_size,
        max_entries=info.max_entries,
        flags=info.map_flags,
        name=info.name.decode(),
    )


class Program(Fd):
    @classmethod
    def from_pin(cls, path: str) -> Program:
        return cls(_check(_lib.bpf_obj_get(path.encode()), f"open pinned program {path}"))

    @classmethod
    def from_id(cls, prog_id: int) -> Program:
        return cls(_check(_lib.bpf_prog_get_fd_by_id(prog_id), f"open program id {prog_id}"))

    def _info(self, map_ids: ctypes.Array | None = None) -> _ProgInfoHead:
        info = _ProgInfoHead()
        if map_ids is not None:
            info.nr_map_ids = len(map_ids)
            info.map_ids = ctypes.addressof(map_ids)
        size = ctypes.c_uint32(ctypes.sizeof(info))
        _check(_lib.bpf_obj_get_info_by_fd(self.fd, ctypes.byref(info), ctypes.byref(size)), "program info")
        return info

    @property
    def id(self) -> int:
        return int(self._info().id)

    def map_ids(self) -> list[int]:
        """Ids of the maps the program uses."""
        n = self._info().nr_map_ids
        if not n:
            return []
        ids = (ctypes.c_uint32 * n)()
        got = self._info(ids).nr_map_ids
        return list(ids[: min(n, got)])

    def test_run(
        self,
        data: bytes,
        repeat: int = 1,
        ctx: bytes | None = None,
        flags: int = 0,
        batch_size: int = 0,
        out_size: int | None = None,
    ) -> tuple[int, bytes, int]:
        """BPF_PROG_TEST_RUN: returns (verdict, output frame, ns per run)."""
        din = ctypes.create_string_buffer(data, len(data))
        cap = out_size if out_size is not None else len(data) + 256
        dout = ctypes.create_string_buffer(cap) if cap else None
        cin = ctypes.create_string_buffer(ctx, len(ctx)) if ctx else None
        opts = _TestRunOpts(
            sz=ctypes.sizeof(_TestRunOpts),
            data_in=ctypes.addressof(din),
            data_out=_ptr(dout),
            data_size_in=len(data),
            data_size_out=cap,
            ctx_in=_ptr(cin),
            ctx_size_in=len(ctx) if ctx else 0,
            repeat=repeat,
            flags=flags,
            batch_size=batch_size,
        )
        _check(_lib.bpf_prog_test_run_opts(self.fd, ctypes.byref(opts)), "BPF_PROG_TEST_RUN")
        out = dout.raw[: opts.data_size_out] if dout is not None else b""
        return int(opts.retval), out, int(opts.duration)


def xdp_attach(ifindex: int, prog: Program, flags: int, old_prog: Program | None = None) -> None:
    opts = _XdpAttachOpts(sz=ctypes.sizeof(_XdpAttachOpts), old_prog_fd=old_prog.fd if old_prog else 0)
    if old_prog is not None:
        flags |= XDP_FLAGS_REPLACE
    _check(_lib.bpf_xdp_attach(ifindex, prog.fd, flags, ctypes.byref(opts)), f"attach XDP to ifindex {ifindex}")


def xdp_detach(ifindex: int, flags: int = 0) -> None:
    _check(_lib.bpf_xdp_detach(ifindex, flags, None), f"detach XDP from ifindex {ifindex}")


def xdp_query_id(ifindex: int, flags: int = 0) -> int:
    """Id of the XDP program attached to ifindex (in the given mode), 0 if none."""
    out = ctypes.c_uint32(0)
    _check(_lib.bpf_xdp_query_id(ifindex, flags, ctypes.byref(out)), f"query XDP on ifindex {ifindex}")
    return int(out.value)


class BpfObject:
    """An ELF object opened with libbpf, to be configured and then loaded."""

    def __init__(self, path: str) -> None:
        ptr = _lib.bpf_object__open_file(path.encode(), None)
        if not ptr:
            raise BpfError(ctypes.get_errno() or errno.EINVAL, f"open BPF object {path}")
        self._obj: int | None = ptr
        self.path = path

    def close(self) -> None:
        if self._obj:
            _lib.bpf_object__close(self._obj)
            self._obj = None

    def __enter__(self) -> BpfObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _map(self, name: str) -> int:
        m = _lib.bpf_object__find_map_by_name(self._obj, name.encode())
        if not m:
            raise KeyError(f"{self.path} has no map {name}")
        return int(m)

    def _prog(self, name: str) -> int:
        p = _lib.bpf_object__find_program_by_name(self._obj, name.encode())
        if not p:
            raise KeyError(f"{self.path} has no program {name}")
        return int(p)

    def set_pin_path(self, map_name: str, path: str) -> None:
        _check(_lib.bpf_map__set_pin_path(self._map(map_name), path.encode()), f"pin path of {map_name}")

    def set_max_entries(self, map_name: str, n: int) -> None:
        _check(_lib.bpf_map__set_max_entries(self._map(map_name), n), f"max_entries of {map_name}")

    def set_inner_map_fd(self, map_name: str, fd: int) -> None:
        """The inner map template of a map of maps (needed to create it)."""
        _check(_lib.bpf_map__set_inner_map_fd(self._map(map_name), fd), f"inner map of {map_name}")

    def set_initial_value(self, map_name: str, data: bytes) -> None:
        buf = ctypes.create_string_buffer(data, len(data))
        _check(_lib.bpf_map__set_initial_value(self._map(map_name), buf, len(data)), f"initial value of {map_name}")

    def set_autoload(self, prog_name: str, on: bool) -> None:
        _check(_lib.bpf_program__set_autoload(self._prog(prog_name), on), f"autoload of {prog_name}")

    def load(self) -> None:
        global _captured
        _captured = []
        try:
            ret = _lib.bpf_object__load(self._obj)
            if ret < 0:
                err = ctypes.get_errno() or -ret
                tail = "\n".join(_captured[-40:])
                raise BpfError(err, f"load BPF object {self.path}", tail)
        finally:
            _captured = None

    def map(self, name: str) -> Map:
        """A new fd to one of the loaded object's maps (owned by the caller)."""
        fd = _check(_lib.bpf_map__fd(self._map(name)), f"fd of map {name}")
        return Map(os.dup(fd))

    def program(self, name: str) -> Program:
        fd = _check(_lib.bpf_program__fd(self._prog(name)), f"fd of program {name}")
        return Program(os.dup(fd))


def load_program(path: str, name: str) -> Program:
    """Load one program of an object that needs no configuration."""
    with BpfObject(path) as obj:
        obj.load()
        return obj.program(name)
