"""The RFC 2544 harness itself, on tiny runs: every DUT returns frames, the
rewrite check counts right, a deliberately wrong DUT is caught, and nothing
is left behind. No speed targets here: those live in the benchmark's report
(docs/benchmarks.md)."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import IS_ROOT, needs_root
from xdsr.bench.rfc2544 import harness, plots, report
from xdsr.bench.rfc2544.duts import BrokenDut, LoopbackDut, XdsrDut, make_dut
from xdsr.bench.rfc2544.frames import (
    IMIX_IP_SIZES,
    VXLAN_OUTER,
    Vxlan,
    build_template,
    imix_mean_wire_size,
    ip_len_for,
    parse_frame,
)
from xdsr.bench.rfc2544.harness import BenchConfig, BenchError, Point, Runner
from xdsr.bench.rfc2544.programs import COUNT_MAX_PROBES, Expectation, expectation_table, key_hash
from xdsr.bench.scenarios import SCENARIO_A, SCENARIO_B

PREFIX = "rfct"  # labs of these tests: rfct-<6 hex>-tester / -dut
TINY = {"trials": 1, "seconds": 0.1, "slices": 1, "warmup": 0.02}


def leftovers(lab: str) -> list[str]:
    """What a lab left behind: namespaces, its bpffs directory, its record."""
    paths = [*Path("/run/netns").glob(f"{lab}-*"), Path("/sys/fs/bpf") / lab, Path("/run/xdsr-lab") / f"{lab}.json"]
    return [str(p) for p in paths if p.exists()]


# -- without root: frames, sizes, the expectation table ------------------------------


def test_frame_sizes_count_the_fcs_and_the_tag() -> None:
    assert ip_len_for(64, tagged=True) == 64 - 4 - 18
    assert ip_len_for(64, tagged=False) == 64 - 4 - 14
    t = build_template(
        dst_mac="02:00:00:00:00:02", src_mac="02:00:00:00:00:01", vid=10, proto="tcp", vips=["198.18.0.1"], size=64
    )
    assert len(t.frame) == 60
    p = parse_frame(t.frame)
    assert (p.vid, p.dport, p.proto, p.ip_len) == (10, 9, 6, 42)
    assert p.ip_checksum_ok and p.l4_checksum_ok
    # 7 x 64 (40-byte packets padded), 4 x 598, 1 x 1522, over 12
    assert imix_mean_wire_size(True) == pytest.approx((7 * 64 + 4 * 598 + 1522) / 12)
    with pytest.raises(ValueError):
        build_template(
            dst_mac="02:00:00:00:00:02", src_mac="02:00:00:00:00:01", vid=None, proto="udp", vips=[], size=64
        )


def test_expectation_table_finds_every_key_and_rejects_others() -> None:
    keys = XdsrDut(SCENARIO_B).expectations(None)  # type: ignore[arg-type]  # needs no testbed
    assert len(keys) == 4000
    bits, slots = expectation_table(keys)
    assert len(slots) <= 4000 and (1 << bits) >= 2 * len(slots)

    def found(e: Expectation) -> bool:
        home, fp = key_hash(*e.words(), bits)
        for i in range(COUNT_MAX_PROBES):
            v = slots.get((home + i) & ((1 << bits) - 1))
            if v is None:
                return False
            if v == fp:
                return True
        return False

    assert all(found(e) for e in keys)
    # Another scenario's backends of the same VIPs, wrong VIDs, wrong VIPs.
    others = [Expectation(e.daddr, e.dst_mac, (e.vid or 0) + 1) for e in keys[:500]]
    others += [Expectation("198.19.0.1", e.dst_mac, e.vid) for e in keys[:500]]
    assert not any(found(e) for e in others)


# -- with root: the generator, the harness -------------------------------------------


@needs_root
@pytest.mark.parametrize("proto", ["udp", "tcp"])
@pytest.mark.parametrize("vid", [10, None])
def test_generator_makes_valid_varied_frames(proto: str, vid: int | None) -> None:
    """Not sent anywhere: BPF_PROG_TEST_RUN without live frames hands the
    frame back. Checksums must be valid (the kernel path drops bad ones), the
    flows must vary, and IMIX must come in the 7:4:1 pattern."""
    from xdsr.bench.rfc2544.programs import Generator

    vips = SCENARIO_B.vips()
    for size, imix in ((64, False), (1510, False), (None, True)):
        t = build_template(
            dst_mac="02:00:00:00:00:02",
            src_mac="02:00:00:00:00:01",
            vid=vid,
            proto=proto,
            vips=vips,
            size=size,
            imix=imix,
        )
        gen = Generator(t.cfg)
        try:
            frames = [gen.run_once(t.frame) for _ in range(120)]
            assert gen.state().seq == 120 and gen.state().errors == 0
        finally:
            gen.close()
        parsed = [parse_frame(out) for verdict, out in frames]
        assert all(v == 3 for v, _ in frames)  # XDP_TX
        assert all(p.ip_checksum_ok and p.l4_checksum_ok for p in parsed)
        assert all(p.vid == vid and p.dport == 9 and p.daddr in vips for p in parsed)
        assert len({(p.saddr, p.sport) for p in parsed}) == 120
        assert len({p.daddr for p in parsed}) > 50
        if imix:
            assert collections.Counter(p.ip_len for p in parsed) == dict(zip(IMIX_IP_SIZES, (70, 40, 10), strict=True))
        else:
            assert all(len(out) == size - 4 for _, out in frames)  # type: ignore[operator]


@needs_root
@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_generator_makes_valid_vxlan_frames(proto: str) -> None:
    """The VXLAN scenario's frames: inner flows vary as the plain ones do,
    and the underlay's lengths and IPv4 checksum follow every inner size."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.layers.vxlan import VXLAN

    from xdsr.bench.rfc2544.programs import Generator

    vx = Vxlan(src="192.0.2.250", dst="192.0.2.1", vni=1000, inner_dst_mac="02:0a:00:00:00:01")
    vips = SCENARIO_A.vips()
    for size, imix in ((64, False), (None, True)):
        t = build_template(
            dst_mac="02:00:00:00:00:02", src_mac="02:00:00:00:00:01", vid=None, proto=proto, vips=vips,
            size=size, imix=imix, vxlan=vx,
        )  # fmt: skip
        gen = Generator(t.cfg)
        try:
            frames = [gen.run_once(t.frame)[1] for _ in range(48)]
            assert gen.state().errors == 0
        finally:
            gen.close()
        inner_sizes = []
        for out in frames:
            p = Ether(out)
            outer = p[IP]
            assert (outer.src, outer.dst, p[UDP].dport, p[UDP].chksum, p[VXLAN].vni) == ("192.0.2.250", "192.0.2.1",
                                                                                         4789, 0, 1000)  # fmt: skip
            assert outer.len == len(out) - 14 and p[UDP].len == len(out) - 34
            got = outer.chksum
            del outer.chksum
            assert IP(bytes(outer)).chksum == got
            inner = parse_frame(bytes(p[VXLAN].payload))
            assert inner.ip_checksum_ok and inner.l4_checksum_ok and inner.daddr in vips
            assert inner.dst_mac == "02:0a:00:00:00:01"
            inner_sizes.append(inner.ip_len)
        if imix:
            assert set(inner_sizes) == set(IMIX_IP_SIZES)
        else:
            assert all(len(out) == 64 - 4 + VXLAN_OUTER for out in frames)


@needs_root
def test_every_dut_returns_frames_rewritten_as_expected(tmp_path: Path) -> None:
    cfg = BenchConfig(sizes=(64,), imix=True, protos=("udp", "tcp"), **TINY)  # type: ignore[arg-type]
    runner = Runner(cfg, lab_prefix=PREFIX)
    res = runner.run()
    assert leftovers(runner.lab_name) == []
    assert {s.dut for s in res.series} == {"loopback", "dnat", "xdsr-a", "xdsr-b", "loopback-vxlan", "xdsr-vxlan"}
    for s in res.series:
        (t,) = s.trials
        assert t.returned > 1000, (s.dut, s.point)
        assert t.wrong == 0 and t.counts.ok == t.returned, (s.dut, s.point, t.counts)
        assert t.gen_errors == 0
        if s.dut != "dnat":  # XDP paths lose nothing
            assert t.sent == t.returned, (s.dut, s.point, t.sent, t.returned)
        if s.dut.startswith("xdsr"):
            assert t.dut_extra["xdsr_forwarded"] == t.returned
        # VXLAN: the inner frames have the sizes measured, in 50 bytes of underlay.
        outer = VXLAN_OUTER if s.dut.endswith("vxlan") else 0
        if s.point.imix:
            # 7:4:1 of 40/576/1500-byte packets: the mean frame on a wire
            mean = t.counts.wire_bytes / t.returned
            tagged = s.dut not in ("dnat", "loopback-vxlan", "xdsr-vxlan")
            assert mean == pytest.approx(imix_mean_wire_size(tagged) + outer, rel=0.01)
        else:
            assert t.counts.wire_bytes == (64 + outer) * t.returned
    assert res.failed_series == []

    names = plots.write_figures(res, tmp_path)
    md, js = report.write(res, tmp_path, names)
    assert "fig8_udp_pps.png" in names and "fig10_imix_pps.png" in names
    assert all((tmp_path / n).stat().st_size > 1000 for n in names)
    text = md.read_text()
    assert "| 64 | UDP | BPS (Gbps) |" in text and "PASS" in text
    doc = json.loads(js.read_text())
    assert doc["passed"] is True
    assert {c["vs"] for c in doc["comparisons"]} >= {"loopback", "dnat", "xdsr-a"}
    assert len(doc["series"]) == 24 and doc["series"][0]["trials"][0]["frames_sent"] > 0


@needs_root
def test_wrong_rewrites_are_caught() -> None:
    """A fast wrong answer is a failure: a DUT that corrupts every 4th frame,
    and xdsr A checked against scenario B's backends (a wrong expectation
    map: only 2 of A's 255 backends are also B's backends of that VIP)."""
    broken = BrokenDut(every=4)
    wrong_map = XdsrDut(SCENARIO_A, expect=SCENARIO_B)
    cfg = BenchConfig(sizes=(64,), protos=("udp",), **TINY)  # type: ignore[arg-type]
    runner = Runner(cfg, duts=[LoopbackDut(), broken, wrong_map], lab_prefix=PREFIX)
    res = runner.run()
    assert leftovers(runner.lab_name) == []
    p = Point("udp", 64)
    ok, bad, mis = (res.get(k, p) for k in ("loopback", "broken", "xdsr-a"))
    assert ok is not None and bad is not None and mis is not None
    assert ok.wrong == 0
    tb = bad.trials[0]
    assert tb.wrong == tb.counts.bad_dst and 0.2 < tb.wrong / tb.returned < 0.3
    tm = mis.trials[0]
    assert tm.counts.bad_dst / tm.returned > 0.95
    assert {s.dut for s in res.failed_series} == {"broken", "xdsr-a"}
    assert "FAIL" in report.markdown(res)


@needs_root
def test_cli_exits_nonzero_on_wrong_frames(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["--duts", "loopback,broken", "--sizes", "64", "--proto", "udp", "--trials", "1", "--seconds", "0.1"]
    args += ["--slices", "1", "--no-plots", "--out", str(out)]
    proc = subprocess.run(
        [sys.executable, "-m", "xdsr.cli", "bench", "rfc2544", *args], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL" in proc.stderr
    assert json.loads((out / "results.json").read_text())["passed"] is False


@needs_root
def test_teardown_after_a_failure() -> None:
    class Exploding(LoopbackDut):
        key = "exploding"

        def before_trial(self, tb: object) -> None:
            raise RuntimeError("boom")

    cfg = BenchConfig(sizes=(64,), protos=("udp",), **TINY)  # type: ignore[arg-type]
    runner = Runner(cfg, duts=[make_dut("xdsr-a"), make_dut("dnat"), Exploding()], lab_prefix=PREFIX)
    with pytest.raises(RuntimeError, match="boom"):
        runner.run()
    assert runner.lab_name and leftovers(runner.lab_name) == []


@pytest.mark.skipif(not IS_ROOT, reason="needs root: the check runs before anything else")
def test_bpf_stats_on_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from xdsr.bench.rfc2544 import harness

    flag = tmp_path / "bpf_stats_enabled"
    flag.write_text("1\n")
    monkeypatch.setattr(harness, "BPF_STATS", flag)
    with pytest.raises(BenchError, match="bpf_stats_enabled"):
        Runner(BenchConfig(sizes=(64,), protos=("udp",), **TINY)).run()  # type: ignore[arg-type]


def test_config_is_validated() -> None:
    with pytest.raises(BenchError):
        BenchConfig(sizes=(32,)).validate()
    with pytest.raises(BenchError):
        BenchConfig(protos=("icmp",)).validate()
    with pytest.raises(BenchError):
        BenchConfig(flows=3).validate()
    pts = BenchConfig(sizes=(64, 128), imix=True, protos=("udp",)).points()
    assert [p.name for p in pts] == ["64", "128", "IMIX"]


# -- the program's own cost (progcost) ------------------------------------------------


@needs_root
@pytest.mark.parametrize("vxlan", [False, True], ids=["vlan", "vxlan"])
@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_program_cost_rig_is_a_fixed_point(vxlan: bool, proto: str) -> None:
    """BPF_PROG_TEST_RUN repeats on the frame as the last run left it: in
    the rig, every run forwards and leaves the frame it was given."""
    from xdsr.bench.rfc2544 import progcost

    with progcost.rig_programs() as progs:
        prog = progs["vxlan" if vxlan else "vlan"]
        for frame in progcost.rig_frames(vxlan, proto, 4):
            verdict, once, _ = prog.test_run(frame)
            assert verdict == progcost.bpf.XDP_TX
            verdict, twice, _ = prog.test_run(once)
            assert verdict == progcost.bpf.XDP_TX and twice == once
        costs = progcost.measure((proto,), rounds=1, repeat=3, flows=2)
        assert set(costs) == {proto}


def test_program_cost_in_the_report() -> None:
    cfg = BenchConfig(sizes=(64,), protos=("udp",), duts=("xdsr-a", "xdsr-vxlan"))
    spread = {"min": 1.0, "median": 2.0, "max": 3.0}
    over = {"min": 9.0, "median": 11.0, "max": 12.0}
    results = harness.Results(cfg, {}, {}, [], "start")
    results.program_cost = {
        "udp": {"noop_ns": spread, "vlan_ns": spread, "vxlan_ns": spread, "vxlan_over_vlan_ns": over}
    }
    md = report.markdown(results)
    assert (
        "## The program's own cost" in md
        and "| UDP | 2.0 (1.0-3.0) | 2.0 (1.0-3.0) | 2.0 (1.0-3.0) | 11.0 (9.0-12.0) |" in md
    )
    (check,) = [t for t in report.targets(results) if "own cost" in t.what]
    assert check.measured == "11.0 (9.0-12.0)" and check.met is False
    assert report.to_json(results)["program_cost"] == results.program_cost
