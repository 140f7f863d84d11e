"""Fixtures for the lab's own tests: every lab a test makes is checked to
leave nothing behind (namespaces, bpffs directory, registry record)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from xdsr.lab.netns import Lab
from xdsr.lab.registry import BPFFS, NETNS_RUN_DIR, REGISTRY_DIR

PREFIX = "xt"  # namespaces of these tests are xt-<6 hex>-<role>

IS_ROOT = os.geteuid() == 0
needs_root = [
    pytest.mark.root,
    pytest.mark.skipif(not IS_ROOT, reason="needs root: builds network namespaces and loads BPF programs"),
]


def leftovers(lab_name: str) -> list[str]:
    """Everything of lab `lab_name` still present on the machine."""
    left = [str(p) for p in NETNS_RUN_DIR.glob(f"{lab_name}-*")] if NETNS_RUN_DIR.exists() else []
    left += [str(p) for p in (BPFFS / lab_name, REGISTRY_DIR / f"{lab_name}.json") if p.exists()]
    return left


@pytest.fixture
def new_lab() -> Iterator[Callable[[], Lab]]:
    """A factory of labs, each closed and checked for leftovers after the test."""
    labs: list[Lab] = []

    def make() -> Lab:
        lab = Lab(PREFIX)
        labs.append(lab)
        return lab

    yield make
    for lab in labs:
        lab.close()
        assert leftovers(lab.name) == []


def netns_names() -> set[str]:
    return {p.name for p in NETNS_RUN_DIR.glob("*")} if NETNS_RUN_DIR.exists() else set()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
