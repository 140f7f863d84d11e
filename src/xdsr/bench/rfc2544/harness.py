"""The RFC 2544 / IMIX throughput harness (`xdsr bench rfc2544`).

Tester and device under test live in two network namespaces joined by one
veth pair. The tester sends with XDP live frames: xdp_gen runs under
BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES, its XDP_TX leaving by the
tester's veth `t0`; the DUT's XDP program on `d0` handles each frame and
sends it back, where xdp_count on `t0` counts it and checks the rewrite.

Everything runs on one CPU: the test run disables migration, and the veth
schedules each receiver's NAPI on the CPU that sends, so the generator, the
DUT and the counter take turns on the generator's CPU. The rate measured is
therefore 1 / (generator + DUT + counter cost per frame), and a DUT's own
cost per frame shows as its difference from the loopback's:
1/pps - 1/pps_loopback.

For each point (protocol, frame size or IMIX), each trial is split into
`slices` rounds in which every DUT takes a turn (the order rotates): its
program is attached to `d0` and its counter to `t0`, a short warm-up runs,
then a measured run of seconds/slices. A trial of a DUT adds up its slices.
Machines shared with other work slow down in bursts; taking turns at this
grain lets every DUT of a trial see about the same disturbance, so the
ratios between DUTs (paired by trial) hold up better than the rates.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import platform
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from xdsr.bench.rfc2544.duts import Dut, Testbed, XdsrDut, make_dut
from xdsr.bench.rfc2544.frames import Template, build_template
from xdsr.bench.rfc2544.programs import (
    Counter,
    CountStats,
    Generator,
    pinned_to,
)
from xdsr.bench.scenarios import FRONTEND_VLAN
from xdsr.dataplane.loader import attach_xdp, detach_xdp
from xdsr.dataplane.netns import in_netns

log = logging.getLogger("xdsr.bench.rfc2544")

TESTER_MAC = "02:25:44:00:00:01"
DUT_MAC = "02:25:44:00:00:02"
BPF_STATS = Path("/proc/sys/kernel/bpf_stats_enabled")

# A measured run is a series of BPF_PROG_TEST_RUN calls of about this long
# each (sized from the warm-up's rate). Every call ends with 20-90 ms of
# teardown (the live-frame page pool waits for an RCU grace period), which is
# why the rate is computed from the kernel's own timing of the run (the
# `duration` it returns: ns per frame, from the first frame to the last),
# not from the wall clock around the calls. The kernel stops that clock
# while the thread is rescheduled, so another task taking the CPU does not
# count as the DUT's time either; the wall clock is kept in the raw data.
CHUNK_SECONDS = 0.5
PROBE_FRAMES = 20_000
MAX_CHUNK = 50_000_000


def _frames_for(rate: float, seconds: float) -> int:
    return int(min(max(rate * seconds, PROBE_FRAMES), MAX_CHUNK))


class BenchError(RuntimeError):
    """The benchmark cannot run (or refuses to)."""


@dataclass(frozen=True)
class Point:
    proto: str  # udp | tcp
    size: int | None  # RFC 2544 frame size, FCS included; None = IMIX

    @property
    def name(self) -> str:
        return "IMIX" if self.size is None else str(self.size)

    @property
    def imix(self) -> bool:
        return self.size is None


@dataclass(frozen=True)
class BenchConfig:
    sizes: tuple[int, ...] = (64, 512, 1510)
    imix: bool = False
    protos: tuple[str, ...] = ("udp", "tcp")
    trials: int = 3
    seconds: float = 1.0  # measured per trial, split into `slices`
    slices: int = 2  # per trial, the DUTs take turns this many times
    warmup: float = 0.05  # before each slice
    cpu: int | None = None  # None: the highest CPU this process may use
    batch_size: int = 64  # frames per test-run batch (the kernel's default, NAPI's weight)
    duts: tuple[str, ...] = ("loopback", "dnat", "xdsr-a", "xdsr-b", "loopback-vxlan", "xdsr-vxlan")
    seed: int = 1
    flows: int = 0  # 0: every frame a new flow; else 2^k flows, repeated

    def points(self) -> list[Point]:
        pts = [Point(p, s) for p in self.protos for s in self.sizes]
        if self.imix:
            pts += [Point(p, None) for p in self.protos]
        return pts

    def validate(self) -> None:
        for p in self.protos:
            if p not in ("udp", "tcp"):
                raise BenchError(f"protocol {p!r}: udp or tcp")
        for s in self.sizes:
            if not 64 <= s <= 1518:
                raise BenchError(f"frame size {s}: 64..1518 (FCS included)")
        if not self.sizes and not self.imix:
            raise BenchError("nothing to measure: give frame sizes or --imix")
        if self.trials < 1 or self.seconds <= 0 or self.slices < 1:
            raise BenchError("trials >= 1, slices >= 1 and seconds > 0")
        if not 1 <= self.batch_size <= 256:
            raise BenchError("batch size 1..256")
        if self.flows and (self.flows < 2 or self.flows & (self.flows - 1)):
            raise BenchError(f"flows {self.flows}: 0 (a new flow every frame) or a power of two >= 2")


@dataclass(frozen=True)
class Trial:
    """One measured run of one DUT at one point."""

    index: int
    sent: int  # frames the generator made (and sent)
    gen_errors: int
    counts: CountStats  # what came back
    seconds: float  # the kernel's time for the run (see CHUNK_SECONDS)
    wall_seconds: float  # wall clock around the calls, teardowns included
    chunk: int
    dut_extra: dict[str, int] = field(default_factory=dict)
    slices: int = 1

    @classmethod
    def combine(cls, index: int, parts: Sequence[Trial]) -> Trial:
        """One trial from its slices: frames and times add up."""
        counts = CountStats()
        extra: dict[str, int] = {}
        for p in parts:
            counts = counts + p.counts
            for k, v in p.dut_extra.items():
                extra[k] = extra.get(k, 0) + v
        return cls(
            index=index,
            sent=sum(p.sent for p in parts),
            gen_errors=sum(p.gen_errors for p in parts),
            counts=counts,
            seconds=sum(p.seconds for p in parts),
            wall_seconds=sum(p.wall_seconds for p in parts),
            chunk=max(p.chunk for p in parts),
            dut_extra=extra,
            slices=len(parts),
        )

    @property
    def returned(self) -> int:
        return self.counts.frames

    @property
    def wrong(self) -> int:
        return self.counts.wrong

    @property
    def pps(self) -> float:
        return self.returned / self.seconds

    @property
    def sent_pps(self) -> float:
        return self.sent / self.seconds

    @property
    def l2_bps(self) -> float:
        return self.counts.wire_bytes * 8 / self.seconds

    @property
    def l1_bps(self) -> float:
        return (self.counts.wire_bytes + 20 * self.returned) * 8 / self.seconds

    @property
    def loss(self) -> float:
        return 1.0 - self.returned / self.sent if self.sent else 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "trial": self.index,
            "seconds": self.seconds,
            "wall_seconds": self.wall_seconds,
            "frames_sent": self.sent,
            "generator_errors": self.gen_errors,
            "frames_returned": self.returned,
            "frames_ok": self.counts.ok,
            "frames_wrong": self.wrong,
            "wrong_not_ipv4": self.counts.bad_parse,
            "wrong_src_mac": self.counts.bad_src,
            "wrong_dst": self.counts.bad_dst,
            "wire_bytes": self.counts.wire_bytes,
            "loss": self.loss,
            "pps": self.pps,
            "sent_pps": self.sent_pps,
            "l2_bps": self.l2_bps,
            "l1_bps": self.l1_bps,
            "chunk": self.chunk,
            "slices": self.slices,
            **self.dut_extra,
        }


@dataclass
class Series:
    """The trials of one DUT at one point."""

    dut: str
    point: Point
    trials: list[Trial] = field(default_factory=list)

    @property
    def wrong(self) -> int:
        return sum(t.wrong for t in self.trials)


@dataclass
class Results:
    config: BenchConfig
    machine: dict[str, object]
    duts: dict[str, dict[str, object]]  # key -> describe()
    series: list[Series]
    started: str
    finished: str = ""
    wall_seconds: float = 0.0
    bpf_stats_after: str = ""
    lab: str = ""  # name of the lab (namespaces <lab>-tester, <lab>-dut)
    # progcost.measure's figures (the program alone, VLAN A vs VXLAN), when taken
    program_cost: dict[str, object] | None = None

    def get(self, dut: str, point: Point) -> Series | None:
        for s in self.series:
            if s.dut == dut and s.point == point:
                return s
        return None

    @property
    def wrong(self) -> int:
        return sum(s.wrong for s in self.series)

    @property
    def failed_series(self) -> list[Series]:
        """Series with wrong frames, or with a DUT that returned nothing."""
        return [s for s in self.series if s.wrong or any(t.returned == 0 for t in s.trials)]

    def to_dict(self) -> dict[str, object]:
        return {
            "config": asdict(self.config),
            "machine": self.machine,
            "duts": self.duts,
            "started": self.started,
            "finished": self.finished,
            "wall_seconds": self.wall_seconds,
            "bpf_stats_enabled_after": self.bpf_stats_after,
            "program_cost": self.program_cost,
            "series": [
                {
                    "dut": s.dut,
                    "proto": s.point.proto,
                    "size": s.point.name,
                    "trials": [t.to_dict() for t in s.trials],
                }
                for s in self.series
            ],
        }


ProgressFn = Callable[[str, Point | None, str | None, Trial | None], None]


def bpf_stats_enabled() -> str:
    try:
        return BPF_STATS.read_text().strip()
    except OSError:
        return "?"


def default_cpu() -> int:
    return max(os.sched_getaffinity(0))


def machine_info(cpu: int) -> dict[str, object]:
    model = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        repo = Path(__file__).resolve().parents[4]
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    hypervisor = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        hypervisor = "yes" if " hypervisor" in f.read() else "no"
    return {
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "virtualized": hypervisor,
        "kernel": platform.release(),
        "nic": "veth pair (tester t0 <-> DUT d0), native XDP on both ends",
        "generator_cpu": cpu,
        "load_avg_at_start": os.getloadavg(),
        "bpf_stats_enabled": bpf_stats_enabled(),
        "git_commit": commit,
        "python": platform.python_version(),
    }


@contextlib.contextmanager
def testbed(lab_prefix: str = "rfc") -> Iterator[Testbed]:
    """The two namespaces and the veth pair, torn down on exit."""
    from xdsr.lab.netns import Lab

    with Lab(lab_prefix) as lab:
        tester_ns = lab.add_netns("tester", ipv6=False)
        dut_ns = lab.add_netns(
            "dut",
            ipv6=False,
            sysctls={
                # For the DNAT DUT: forward, and never answer a frame that
                # leaves by the interface it came in on with an ICMP redirect
                # (every frame is a new source: one redirect each).
                "net.ipv4.ip_forward": 1,
                "net.ipv4.conf.all.rp_filter": 0,
                "net.ipv4.conf.default.rp_filter": 0,
                "net.ipv4.conf.all.send_redirects": 0,
                "net.ipv4.conf.default.send_redirects": 0,
            },
        )
        # add_veth turns rxvlan/txvlan (and tx checksum) offloads off: tags stay in the frame.
        # MTU 1600: an IMIX 1500-byte packet in VXLAN is 1550 bytes of IP.
        veth = lab.add_veth(tester_ns, "t0", dut_ns, "d0", mac_a=TESTER_MAC, mac_b=DUT_MAC, mtu=1600)
        yield Testbed(lab, tester_ns, dut_ns, veth.a, veth.b)


def template_for(dut: Dut, tb: Testbed, point: Point, seed: int, flows: int = 0) -> Template:
    return build_template(
        dst_mac=tb.dut.mac,
        src_mac=tb.tester.mac,
        vid=FRONTEND_VLAN if dut.tagged else None,
        proto=point.proto,
        vips=dut.vips(),
        size=point.size,
        imix=point.imix,
        seed=seed,
        flows=flows,
        vxlan=dut.vxlan,
    )


def settle(counter: Counter, timeout: float = 1.0) -> CountStats:
    """Wait until no more frames come back (they nearly all have by the time
    the test run returns: the DUT runs in the same softirq)."""
    prev = counter.read()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.01)
        cur = counter.read()
        if cur.frames == prev.frames:
            return cur
        prev = cur
    return prev


class Runner:
    """Runs a BenchConfig over a set of DUTs in one testbed."""

    def __init__(
        self,
        config: BenchConfig,
        duts: Sequence[Dut] | None = None,
        progress: ProgressFn | None = None,
        lab_prefix: str = "rfc",
    ) -> None:
        config.validate()
        self.lab_prefix = lab_prefix
        self._rates: dict[tuple[str, bytes], float] = {}  # (DUT, template) -> last rate, frames/s
        self.lab_name = ""  # set once the lab exists: <prefix>-<6 hex>
        self.config = config
        self.duts = list(duts) if duts is not None else [make_dut(k) for k in config.duts]
        self.cpu = config.cpu if config.cpu is not None else default_cpu()
        self.progress = progress or (lambda *a: None)

    def _note(self, what: str, point: Point | None = None, dut: str | None = None, trial: Trial | None = None) -> None:
        self.progress(what, point, dut, trial)

    def check_environment(self) -> None:
        if os.geteuid() != 0:
            raise BenchError("needs root (BPF, network namespaces)")
        if bpf_stats_enabled() not in ("0", "?"):
            raise BenchError(
                "kernel.bpf_stats_enabled is on: it costs every BPF program run a timestamp pair and "
                "about halves the packet rate here; turn it off (sysctl -w kernel.bpf_stats_enabled=0)"
            )
        if self.cpu not in os.sched_getaffinity(0):
            raise BenchError(f"CPU {self.cpu} is not available to this process")

    def run(self, install_signal_handlers: bool = False) -> Results:
        self.check_environment()
        started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        t_start = time.monotonic()
        results = Results(self.config, machine_info(self.cpu), {}, [], started)
        with contextlib.ExitStack() as stack:
            tb = stack.enter_context(testbed(self.lab_prefix))
            self.lab_name = results.lab = tb.lab.name
            if install_signal_handlers:
                tb.lab.install_signal_handlers()

            def undo_in_lab(fn: Callable[..., None], *args: object) -> None:
                """Undo something in the namespaces, unless they are gone
                already (a signal closed the lab); a failing step must not
                hide the exception that ended the run."""

                def call() -> None:
                    if tb.lab.closed:
                        return
                    try:
                        fn(*args)
                    except Exception:
                        log.warning("rfc2544 teardown: %s failed", getattr(fn, "__qualname__", fn), exc_info=True)

                stack.callback(call)

            counters: dict[str, Counter] = {}
            for dut in self.duts:
                self._note(f"setting up {dut.label}")
                stack.callback(dut.close)
                dut.setup(tb)
                undo_in_lab(dut.teardown, tb)
                c = Counter(dut.src_mac(tb), dut.expectations(tb), vxlan=dut.vxlan is not None)
                stack.callback(c.close)
                counters[dut.key] = c
                results.duts[dut.key] = {**dut.describe(), "expectations": c.n_expectations}
            # Detach before the counters and programs are closed (the
            # namespaces' deletion would also do it).
            undo_in_lab(functools.partial(detach_xdp, tb.tester.ifindex, netns=tb.tester_ns, mode="native"))
            undo_in_lab(functools.partial(detach_xdp, tb.dut.ifindex, netns=tb.dut_ns, mode="native"))
            for point in self.config.points():
                self._run_point(tb, point, counters, results)
        results.finished = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        results.wall_seconds = time.monotonic() - t_start
        results.bpf_stats_after = bpf_stats_enabled()
        results.machine["load_avg_at_end"] = os.getloadavg()
        return results

    def _run_point(self, tb: Testbed, point: Point, counters: dict[str, Counter], results: Results) -> None:
        cfg = self.config
        gens: dict[str, tuple[Generator, Template]] = {}
        try:
            for dut in self.duts:
                # The same seed for all: the same flows, only the VIPs differ.
                tmpl = template_for(dut, tb, point, cfg.seed, cfg.flows)
                gens[dut.key] = (Generator(tmpl.cfg), tmpl)
                results.series.append(Series(dut.key, point))
            n = len(self.duts)
            for trial in range(cfg.trials):
                parts: dict[str, list[Trial]] = {d.key: [] for d in self.duts}
                for sl in range(cfg.slices):
                    # Rotate the order so no DUT always runs first (or after DNAT).
                    k = (trial * cfg.slices + sl) % n
                    for dut in self.duts[k:] + self.duts[:k]:
                        self._note("running", point, dut.key)
                        gen, tmpl = gens[dut.key]
                        parts[dut.key].append(
                            self._slice(tb, dut, gen, tmpl, counters[dut.key], trial, cfg.seconds / cfg.slices)
                        )
                for dut in self.duts:
                    t = Trial.combine(trial, parts[dut.key])
                    series = results.get(dut.key, point)
                    assert series is not None
                    series.trials.append(t)
                    self._note("trial done", point, dut.key, t)
        finally:
            for gen, _ in gens.values():
                gen.close()

    def _slice(
        self, tb: Testbed, dut: Dut, gen: Generator, tmpl: Template, counter: Counter, index: int, seconds: float
    ) -> Trial:
        """Attach the DUT and its counter, warm up, then measure for `seconds`."""
        cfg = self.config
        attach_xdp(tb.dut.ifindex, dut.program(), netns=tb.dut_ns)
        attach_xdp(tb.tester.ifindex, counter.prog, netns=tb.tester_ns)
        dut.before_trial(tb)
        ifindex = tb.tester.ifindex

        def send(n: int) -> float:
            """n frames; the kernel's time for them, in seconds."""
            return gen.run_live(tmpl.frame, ifindex, n, cfg.batch_size) * n / 1e9

        with in_netns(tb.tester_ns), pinned_to(self.cpu):
            # The warm-up (caches, conntrack, page pools) runs for `warmup`
            # seconds at the rate of this DUT's last slice; the first slice
            # of a point finds the rate with a short run first.
            rate = self._rates.get((dut.key, tmpl.key))
            if rate is None:
                rate = PROBE_FRAMES / max(send(PROBE_FRAMES), 1e-9)
            if cfg.warmup > 0:
                n = _frames_for(rate, cfg.warmup)
                rate = n / max(send(n), 1e-9)
            c0 = settle(counter)
            s0 = gen.state()
            extra0 = self._dut_extra(dut)
            busy, chunk = 0.0, 0
            start = time.perf_counter()
            # Calls of at most CHUNK_SECONDS each, the last one sized to what
            # is left, so the slice lasts `seconds` (within a few percent).
            while seconds - busy > 0.02 * seconds:
                n = _frames_for(rate, min(CHUNK_SECONDS, seconds - busy))
                busy += send(n)
                chunk = max(chunk, n)
            wall = time.perf_counter() - start
        c1 = settle(counter)
        self._rates[(dut.key, tmpl.key)] = (c1.frames - c0.frames) / max(busy, 1e-9)
        s1 = gen.state()
        extra1 = self._dut_extra(dut)
        extra = {k: extra1[k] - extra0[k] for k in extra1}
        return Trial(
            index=index,
            sent=int(s1.seq - s0.seq),
            gen_errors=int(s1.errors - s0.errors),
            counts=c1 - c0,
            seconds=busy,
            wall_seconds=wall,
            chunk=chunk,
            dut_extra=extra,
        )

    @staticmethod
    def _dut_extra(dut: Dut) -> dict[str, int]:
        """DUT-side counters worth keeping with each trial."""
        if isinstance(dut, XdsrDut):
            return {"xdsr_forwarded": dut.forwarded()}
        return {}
