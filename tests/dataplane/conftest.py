from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from xdsr.dataplane.loader import Dataplane


@pytest.fixture
def dp(pin_dir: Path) -> Iterator[Dataplane]:
    with Dataplane.create_or_open(pin_dir, max_services=64) as d:
        yield d
