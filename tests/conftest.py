"""Shared fixtures. Tests that touch the kernel need root and skip without it."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

IS_ROOT = os.geteuid() == 0

needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root: loads BPF programs and builds network namespaces")


@contextlib.contextmanager
def private_pin_dir() -> Iterator[Path]:
    """A bpffs directory of its own, removed afterwards even on failure."""
    from xdsr.dataplane.loader import ensure_bpffs, remove_pins

    path = Path(f"/sys/fs/bpf/xdsr-test-{uuid.uuid4().hex[:10]}")
    ensure_bpffs(path)
    try:
        yield path
    finally:
        remove_pins(path)


@pytest.fixture
def pin_dir() -> Iterator[Path]:
    """A private bpffs directory for one test's maps."""
    if not IS_ROOT:
        pytest.skip("needs root: pins BPF maps")
    with private_pin_dir() as path:
        yield path
