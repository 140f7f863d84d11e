"""`xdsr bench dataplane`'s per-packet cost measures the forwarding path:
BPF_PROG_TEST_RUN repeats the program on the frame as the last run left it,
so the frames measured must be fixed points of the rewrite (before, every
repetition after the first took the short "not for this node" path)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.conftest import needs_root
from xdsr.bench import dataplane as bench
from xdsr.bench.scenarios import SCENARIO_A, SCENARIO_B, Scenario
from xdsr.dataplane import libbpf as bpf
from xdsr.dataplane.loader import Dataplane, ensure_bpffs, remove_pins
from xdsr.dataplane.state import apply


@needs_root
@pytest.mark.parametrize("scenario", [SCENARIO_A, SCENARIO_B], ids=lambda s: s.name)
def test_measured_frames_forward_on_every_repetition(scenario: Scenario) -> None:
    pin = Path(f"/sys/fs/bpf/xdsr-benchdp-{uuid.uuid4().hex[:8]}")
    ensure_bpffs(pin)
    try:
        with Dataplane.create_or_open(pin, max_services=512) as dp:
            apply(dp, bench.fixed_point_services(scenario))
            prog = dp.load_program(bench.LBN_MAC)
            try:
                pkts = bench.fixed_point_frames(prog, scenario, 4)
                assert len(set(pkts)) == 4
                for p in pkts:
                    verdict, out, _ = prog.test_run(p, repeat=50)
                    assert verdict == bpf.XDP_TX and out == p
                assert bench.ns_per_run(prog, pkts, 10) > 0
                # A frame for another backend is rewritten away from this node:
                # repeated, it stops forwarding, and the measurement refuses it.
                other = next(f for f in bench.frames(scenario, 0, seed=7) if prog.test_run(f)[1][:6] != pkts[0][:6])
                with pytest.raises(RuntimeError, match="not a fixed point"):
                    bench.ns_per_run(prog, [other], 10)
            finally:
                prog.close()
    finally:
        remove_pins(pin)
    assert not pin.exists()
