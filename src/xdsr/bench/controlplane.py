"""How fast a request becomes forwarding: `xdsr bench control-plane`.

A whole local deployment (etcd, API server, operator, three agents on the LB
nodes of a lab fabric) is started. For each run a load balancer is created
in one API call (Octavia's fully populated create: one listener, a pool of
255 members with their MACs given), and the clock stops when every LB node's
attached XDP program forwards a packet for the VIP — asked directly through
BPF_PROG_TEST_RUN on each node's pinned program, polled every millisecond.
The second figure is convergence: 1000 load balancers of 10 members created
at once, until every node forwards every VIP.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import http.client
import ipaddress
import json
import os
import queue
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from xdsr.dataplane import libbpf as bpf
from xdsr.dataplane.loader import Dataplane
from xdsr.lab import FabricSpec, TenantSpec, build_fabric
from xdsr.local.cluster import LocalCluster
from xdsr.local.probes import FRONTEND_VLAN, Probes

BACKEND_VLAN = 100
MAX_SERVICES = 4096  # what each agent's maps hold (LocalCluster's default)


def _percentile(xs: list[float], p: float) -> float:
    s = sorted(xs)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


@dataclass
class Series:
    values: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        v = self.values
        return {
            "n": len(v),
            "min": min(v),
            "median": statistics.median(v),
            "p99": _percentile(v, 99),
            "max": max(v),
        }


def lb_body(name: str, vip: str, n_members: int, salt: int) -> dict[str, object]:
    members = []
    for j in range(n_members):
        addr = ipaddress.IPv4Address(int(ipaddress.IPv4Address("10.64.0.0")) + salt * 1024 + j + 1)
        members.append(
            {
                "address": str(addr),
                "protocol_port": 80,
                "mac_address": f"02:cb:{(salt >> 8) & 0xFF:02x}:{salt & 0xFF:02x}:{j >> 8:02x}:{j & 0xFF:02x}",
                "segment": {"type": "vlan", "id": BACKEND_VLAN},
            }
        )
    return {
        "loadbalancer": {
            "name": name,
            "vip_address": vip,
            "vip_segment": {"type": "vlan", "id": FRONTEND_VLAN},
            "listeners": [
                {
                    "name": f"{name}-l",
                    "protocol": "TCP",
                    "protocol_port": 80,
                    "default_pool": {
                        "name": f"{name}-p",
                        "protocol": "TCP",
                        "lb_algorithm": "SOURCE_IP_PORT",
                        "members": members,
                    },
                }
            ],
        }
    }


def _wait_all(probes: Probes, vips: list[str], timeout: float, want: bool = True) -> float:
    """Seconds until every node forwards (or no node forwards) every VIP."""
    t0 = time.perf_counter()
    pending = list(vips)
    while pending:
        # One VIP at a time until it is there, then a sweep of the rest: a
        # sweep of thousands of probes after every millisecond took most of
        # a core from the nodes being measured.
        if all(f == want for f in probes.forwarding(pending[0])):
            pending = [v for v in pending if any(f != want for f in probes.forwarding(v))]
        if not pending:
            break
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"{len(pending)} VIPs not {'forwarded' if want else 'removed'} after {timeout}s")
        time.sleep(0.001)
    return time.perf_counter() - t0


def _delete_all(client: httpx.Client, ids: list[str]) -> None:
    for lb_id in ids:
        client.delete(f"/v2/lbaas/loadbalancers/{lb_id}", params={"cascade": "true"})


def run(
    runs: int = 20, members: int = 255, bulk: int = 1000, bulk_members: int = 10, workers: int = 8
) -> dict[str, object]:
    spec = FabricSpec(n_lbns=3, prefix="xdsr-cpb", echo_servers=False, tenants=(TenantSpec(name="t", n_backends=1),))
    with build_fabric(spec) as fab:
        fab.lab.install_signal_handlers()
        with LocalCluster.on_fabric(fab, resync=5.0) as cluster:
            client = cluster.client()
            # Wait until the three nodes have formed a group.
            warm = client.post("/v2/lbaas/loadbalancers", json=lb_body("warmup", "198.19.255.1", 1, 4000))
            warm.raise_for_status()
            probes_until = time.monotonic() + 60
            while True:
                try:
                    probes = Probes.of(cluster)
                    _wait_all(probes, ["198.19.255.1"], 60)
                    break
                except (bpf.BpfError, FileNotFoundError, TimeoutError):
                    if time.monotonic() > probes_until:
                        raise
                    time.sleep(0.1)
            _delete_all(client, [warm.json()["loadbalancer"]["id"]])

            single = Series()
            api = Series()
            active = Series()
            for i in range(runs):
                vip = f"198.19.0.{i + 1}"
                body = lb_body(f"bench{i}", vip, members, i)
                t0 = time.perf_counter()
                resp = client.post("/v2/lbaas/loadbalancers", json=body)
                api.values.append(time.perf_counter() - t0)
                resp.raise_for_status()
                lb_id = resp.json()["loadbalancer"]["id"]
                _wait_all(probes, [vip], 30)
                single.values.append(time.perf_counter() - t0)
                while (
                    client.get(f"/v2/lbaas/loadbalancers/{lb_id}").json()["loadbalancer"]["provisioning_status"]
                    != "ACTIVE"
                ):
                    time.sleep(0.001)
                active.values.append(time.perf_counter() - t0)
                _delete_all(client, [lb_id])
                _wait_all(probes, [vip], 30, want=False)

            vips = [str(ipaddress.IPv4Address(int(ipaddress.IPv4Address("198.20.0.1")) + i)) for i in range(bulk)]
            bodies = _encoded([lb_body(f"bulk{i}", vip, bulk_members, 100 + i) for i, vip in enumerate(vips)])

            with _creator(cluster, workers) as create_all:
                t0 = time.perf_counter()
                ids = create_all(bodies)
                created = time.perf_counter() - t0
            _wait_all(probes, vips, 600)
            converged = time.perf_counter() - t0
            _delete_all(client, ids)
            probes.close()
            return {
                "single": {
                    "members": members,
                    "until_all_nodes_forward_s": single.summary(),
                    "api_call_s": api.summary(),
                    "until_provisioning_active_s": active.summary(),
                },
                "bulk": {
                    "load_balancers": bulk,
                    "members_each": bulk_members,
                    "api_calls_done_s": created,
                    "until_all_nodes_forward_all_s": converged,
                    "client_workers": workers,
                },
            }


# --- at scale: what one change costs on a full group (`--scale`) -------------------


def _cpu_seconds(pid: int) -> float:
    """CPU time of a local process, every thread's (those gone included), in
    ns: its CPU-time clock (clock_getcpuclockid(3): ~pid << 3 | CPUCLOCK_SCHED).
    /proc/<pid>/stat counts in 10 ms ticks, coarser than one change's cost."""
    clock = ctypes.c_int32((~pid << 3) | 2).value
    try:
        return time.clock_gettime(clock)
    except OSError:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _etcd_writes(endpoint: str) -> float:
    """Puts and deletes etcd has applied since it started (its own metrics)."""
    text = httpx.get(f"{endpoint}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(("etcd_mvcc_put_total ", "etcd_mvcc_delete_total ")):
            total += float(line.split()[1])
    return total


def _operator_counts(cluster: LocalCluster) -> dict[str, float]:
    """From the operator's metrics: its reconcile passes, pushes to nodes and
    store requests (by operation)."""
    text = httpx.get(cluster.operator_metrics_url, timeout=10).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("xdsr_operator_reconcile_duration_seconds_count "):
            out["passes"] = float(line.split()[1])
        elif line.startswith("xdsr_operator_pushes_total{"):
            out["pushes"] = out.get("pushes", 0.0) + float(line.split()[1])
        elif line.startswith("xdsr_store_request_duration_seconds_count{"):
            op = line.split('op="', 1)[1].split('"', 1)[0]
            out[f"store_{op}"] = float(line.split()[1])
    return out


_PUSH = re.compile(r"LB node (\S+) at generation \d+: .* \((\d+) bytes\)")


class _Meter:
    """What one change costs: CPU of the operator and the agents, bytes the
    operator sent each node (from its log), store writes (etcd's metrics)."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.log = cluster.operator.log_path

    def _cpu(self) -> tuple[float, float, float]:
        c = self.cluster
        return (
            _cpu_seconds(c.operator.pid),
            sum(_cpu_seconds(a.pid) for a in c.agents.values()) / len(c.agents),
            _cpu_seconds(c.apiserver.pid),
        )

    def quiet(self, still: float = 1.5, timeout: float = 120.0) -> None:
        """Until the store has seen no write for `still` seconds: what an
        earlier step set off (statuses after a fill, counters after a poll)
        is not counted as this change's."""
        deadline = time.monotonic() + timeout
        last, since = _etcd_writes(self.cluster.etcd.endpoint), time.monotonic()
        while time.monotonic() - since < still and time.monotonic() < deadline:
            time.sleep(0.25)
            now = _etcd_writes(self.cluster.etcd.endpoint)
            if now != last:
                last, since = now, time.monotonic()

    def start(self) -> None:
        self.quiet()
        self.cpu0 = self._cpu()
        self.writes0 = _etcd_writes(self.cluster.etcd.endpoint)
        self.offset = self.log.stat().st_size

    def stop(self, quiet: float = 1.0) -> dict[str, float]:
        # Until quiet: what the change set off after the clock stopped counts too.
        time.sleep(quiet)
        cpu = self._cpu()
        with open(self.log, "rb") as f:
            f.seek(self.offset)
            text = f.read().decode(errors="replace")
        sent: dict[str, int] = {}
        for m in _PUSH.finditer(text):
            sent[m.group(1)] = sent.get(m.group(1), 0) + int(m.group(2))
        return {
            "operator_cpu_s": cpu[0] - self.cpu0[0],
            "agent_cpu_s": cpu[1] - self.cpu0[1],
            "apiserver_cpu_s": cpu[2] - self.cpu0[2],
            "bytes_per_node": max(sent.values(), default=0),
            "store_writes": _etcd_writes(self.cluster.etcd.endpoint) - self.writes0,
        }


def _wait_active(client: httpx.Client, lb_id: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while client.get(f"/v2/lbaas/loadbalancers/{lb_id}").json()["loadbalancer"]["provisioning_status"] != "ACTIVE":
        if time.monotonic() > deadline:
            raise TimeoutError(f"load balancer {lb_id} not ACTIVE after {timeout}s")
        time.sleep(0.002)


@contextlib.contextmanager
def _creator(cluster: LocalCluster, workers: int) -> Iterator[Callable[[list[bytes]], list[str]]]:
    """A function that creates load balancers through the API from `workers`
    threads, and returns their ids. Made before any clock starts, and light:
    the clients share the two cores with what they measure. So each worker
    keeps one keep-alive connection of the standard library's (an httpx
    client costs milliseconds of CPU to make, for its TLS context, and about
    a millisecond per request); create_all takes bodies already encoded
    (_encoded), before the clock starts."""
    url = httpx.URL(cluster.api_url)
    headers = {"X-Auth-Token": cluster.tokens.admin, "Content-Type": "application/json"}
    conns: queue.SimpleQueue[http.client.HTTPConnection] = queue.SimpleQueue()
    opened: list[http.client.HTTPConnection] = []
    for _ in range(workers):
        # A fully populated create of hundreds of members on a loaded machine
        # may take longer than an interactive client waits.
        c = http.client.HTTPConnection(url.host, url.port, timeout=120.0)
        opened.append(c)
        conns.put(c)

    def create(body: bytes) -> str:
        c = conns.get()
        try:
            c.request("POST", "/v2/lbaas/loadbalancers", body=body, headers=headers)
            r = c.getresponse()
            data = r.read()
            if r.status != 201:
                raise RuntimeError(f"create: HTTP {r.status}: {data[:300]!r}")
            return str(json.loads(data)["loadbalancer"]["id"])
        except BaseException:
            c.close()  # reconnects on its next request
            raise
        finally:
            conns.put(c)

    def create_all(bodies: list[bytes]) -> list[str]:
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            return list(pool.map(create, bodies))

    try:
        yield create_all
    finally:
        for c in opened:
            c.close()


def _encoded(bodies: list[dict[str, object]]) -> list[bytes]:
    return [json.dumps(b).encode() for b in bodies]


def _fill(cluster: LocalCluster, bodies: list[bytes], workers: int) -> list[str]:
    with _creator(cluster, workers) as create_all:
        return create_all(bodies)


def run_scale(
    scales: list[int],
    members: int = 10,
    runs: int = 3,
    workers: int = 8,
    restart_node: bool = True,
    progress: Callable[[dict[str, object]], None] | None = None,
    profile_dir: Path | None = None,
) -> dict[str, object]:
    """For each N: a fresh deployment, filled with N load balancers of
    `members` members (8 clients at once), with the CPU each process spent on
    the fill; then `runs` times each (0: none): one member added, one load
    balancer created, one deleted, each until every node forwards it (a
    member: until the load balancer is ACTIVE again, which the operator says
    once every node applied it), with what each cost. Last (unless not
    restart_node), one agent restarted with its maps purged: until it
    forwards all N again. profile_dir: py-spy records each process during
    the fill there (collapsed stacks, one file per process and scale)."""
    results = []
    for n in scales:
        spec = FabricSpec(
            n_lbns=3, prefix="xdsr-cps", echo_servers=False, tenants=(TenantSpec(name="t", n_backends=1),)
        )
        with build_fabric(spec) as fab:
            fab.lab.install_signal_handlers()
            with LocalCluster.on_fabric(fab, resync=10.0, health_checks=False) as cluster:
                results.append(_scale_one(cluster, n, members, runs, workers, restart_node, profile_dir))
        if progress is not None:
            progress({"members_each": members, "runs": runs, "scales": results})
    return {"members_each": members, "runs": runs, "scales": results}


def _processes(cluster: LocalCluster) -> dict[str, int]:
    """The deployment's processes by name (pid)."""
    assert cluster.etcd.proc is not None
    procs = {"apiserver": cluster.apiserver.pid, "etcd": cluster.etcd.proc.pid, "operator": cluster.operator.pid}
    procs.update({f"agent {name}": a.pid for name, a in sorted(cluster.agents.items())})
    return procs


def _bench_cpu() -> float:
    t = os.times()
    return t.user + t.system


@contextlib.contextmanager
def _profiled(procs: dict[str, int], out: Path | None, tag: str) -> Iterator[None]:
    """py-spy records each process (collapsed stacks, out/<tag>-<name>.txt)
    while the block runs; nothing without `out`."""
    if out is None:
        yield
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    out.mkdir(parents=True, exist_ok=True)
    running = []
    for name, pid in procs.items():
        if name == "etcd":
            continue
        dest = out / f"{tag}-{name.replace(' ', '-')}.txt"
        argv = [spy, "record", "--pid", str(pid), "--rate", "200", "--format", "raw", "--nonblocking"]
        argv += ["--output", str(dest)]
        running.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    time.sleep(1.0)  # py-spy attaches
    try:
        yield
    finally:
        for p in running:
            p.send_signal(signal.SIGINT)
        for p in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(30)


def _scale_one(
    cluster: LocalCluster,
    n: int,
    members: int,
    runs: int,
    workers: int,
    restart_node: bool,
    profile_dir: Path | None = None,
) -> dict[str, object]:
    client = cluster.client()
    # A group holds what its nodes' maps hold (4096 services by default): at
    # that size the group is filled one short, so the load balancer each run
    # creates fits (and is refused otherwise, as it should be).
    n = min(n, MAX_SERVICES - 1)
    base = int(ipaddress.IPv4Address("198.20.0.1"))
    vips = [str(ipaddress.IPv4Address(base + i)) for i in range(n)]
    bodies = _encoded([lb_body(f"fill{i}", vip, members, 100 + i) for i, vip in enumerate(vips)])
    probes_until = time.monotonic() + 60
    t0 = time.perf_counter()
    ids = _fill(cluster, bodies[:1], 1)
    while True:
        try:
            probes = Probes.of(cluster)
            _wait_all(probes, vips[:1], 60)
            break
        except (bpf.BpfError, FileNotFoundError, TimeoutError):
            if time.monotonic() > probes_until:
                raise
            time.sleep(0.1)
    procs = _processes(cluster)
    with _profiled(procs, profile_dir, f"fill{n}"):
        # CPU of every process over the fill: where a create's cost goes
        # when everything shares the cores. The bench's own: its clients
        # until the API calls are done, then its probes.
        cpu0 = {name: _cpu_seconds(pid) for name, pid in procs.items()}
        counts0 = _operator_counts(cluster)
        bench0 = _bench_cpu()
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        ids += _fill(cluster, bodies[1:], workers)
        created = time.perf_counter() - t0
        bench1 = _bench_cpu()
        _wait_all(probes, vips, 900)
        filled = time.perf_counter() - t0
        cpu = {name: _cpu_seconds(pid) - cpu0[name] for name, pid in procs.items()}
        cpu["clients"] = bench1 - bench0
        cpu["probes"] = _bench_cpu() - bench1
    # The API server's CPU per create while everything else shares the
    # cores: one core of it alone would take 1 / this creates per second.
    fill_api_cpu = cpu["apiserver"] / max(1, n - 1)
    _wait_active(client, ids[-1], 300)
    time.sleep(2.0)  # let the fill settle: its statuses, the first polls

    # Until every status is written (the last create's ACTIVE above may come
    # before others'): the operator's CPU on the fill, whole.
    _Meter(cluster).quiet()
    cpu["operator_until_quiet"] = _cpu_seconds(procs["operator"]) - cpu0["operator"]
    counts = {k: v - counts0.get(k, 0.0) for k, v in _operator_counts(cluster).items()}

    meter = _Meter(cluster)
    out: dict[str, list[dict[str, float]]] = {"member_add": [], "lb_create": [], "lb_delete": []}
    lb0 = client.get(f"/v2/lbaas/loadbalancers/{ids[0]}").json()["loadbalancer"]
    pool_id = client.get("/v2/lbaas/pools", params={"loadbalancer_id": lb0["id"]}).json()["pools"][0]["id"]
    for r in range(runs):
        meter.start()
        t = time.perf_counter()
        mac = f"02:cd:00:00:{r >> 8:02x}:{r & 0xFF:02x}"
        resp = client.post(
            f"/v2/lbaas/pools/{pool_id}/members",
            json={"member": {"address": f"10.99.0.{r + 1}", "protocol_port": 80, "mac_address": mac}},
        )
        resp.raise_for_status()
        _wait_active(client, ids[0], 120)
        out["member_add"].append({"seconds": time.perf_counter() - t, **meter.stop()})

        vip = f"198.19.1.{r + 1}"
        meter.start()
        t = time.perf_counter()
        resp = client.post("/v2/lbaas/loadbalancers", json=lb_body(f"extra{r}", vip, members, 3000 + r))
        resp.raise_for_status()
        _wait_all(probes, [vip], 120)
        out["lb_create"].append({"seconds": time.perf_counter() - t, **meter.stop()})

        meter.start()
        t = time.perf_counter()
        _delete_all(client, [resp.json()["loadbalancer"]["id"]])
        _wait_all(probes, [vip], 120, want=False)
        out["lb_delete"].append({"seconds": time.perf_counter() - t, **meter.stop()})

    resync = resync_after_start = None
    if restart_node:
        # A node restarted with empty maps: it gets the group's full state.
        name = sorted(cluster.agents)[0]
        agent = cluster.agents[name]
        agent.stop()
        argv = agent.argv
        pin = Path(argv[argv.index("--pin-dir") + 1])
        # Detached and purged: the node starts with nothing, as a new one.
        with Dataplane.open(pin) as dp:
            dp.detach(argv[argv.index("--iface") + 1], netns=argv[argv.index("--netns") + 1])
        shutil.rmtree(pin, ignore_errors=True)
        probes.close()
        offset = agent.log_path.stat().st_size
        t = time.perf_counter()
        agent.start()
        deadline = time.monotonic() + 120
        while True:
            try:
                probes = Probes.of(cluster)
                _wait_all(probes, vips, max(1.0, deadline - time.monotonic()))
                break
            except (bpf.BpfError, FileNotFoundError, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        resync = time.perf_counter() - t
        # Without the process's own start (imports, maps, attach): from the
        # agent's "agent started" line (it then registers, and the operator
        # sends it the full state) until every VIP forwards there.
        served = _log_time(agent.log_path, "agent started", after=offset)
        resync_after_start = time.time() - served if served is not None else None
    probes.close()
    client.close()

    def med(xs: list[dict[str, float]]) -> dict[str, float]:
        return {k: statistics.median(x[k] for x in xs) for k in xs[0]} if xs else {}

    def spread(xs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
        return {k: {"min": min(x[k] for x in xs), "median": med(xs)[k], "max": max(x[k] for x in xs)} for k in xs[0]}

    return {
        "load_balancers": n,
        "members_each": members,
        "fill_api_calls_s": created,
        "fill_until_all_nodes_forward_s": filled,
        "creates_per_s": (n - 1) / created if created else 0.0,
        "fill_apiserver_cpu_ms_per_create": fill_api_cpu * 1000,
        # CPU seconds of each process over the fill (API calls until every
        # node forwards every VIP; operator_until_quiet: until its last
        # status write); load average (1 min) at its start.
        "fill_cpu_s": cpu,
        "fill_cpu_ms_per_create": sum(v for k, v in cpu.items() if k not in ("probes", "operator_until_quiet"))
        / max(1, n - 1)
        * 1000,
        "fill_load_average_1m_before": load,
        # What the operator did for the fill, until quiet: reconcile passes,
        # pushes (to all nodes) and store requests by operation.
        "fill_operator_counts": counts,
        **(
            {
                "member_add": {
                    **med(out["member_add"]),
                    "p99_s": _percentile([x["seconds"] for x in out["member_add"]], 99),
                },
                "lb_create": med(out["lb_create"]),
                "lb_delete": med(out["lb_delete"]),
                "spread": {change: spread(xs) for change, xs in out.items()},
            }
            if runs
            else {}
        ),
        "raw": out,
        "restarted_node_forwards_all_s": resync,
        "restarted_node_started_to_forwarding_all_s": resync_after_start,
    }


def _log_time(path: Path, text: str, after: int) -> float | None:
    """Unix time of the first log line past `after` bytes containing text."""
    with open(path, "rb") as f:
        f.seek(after)
        for raw in f:
            line = raw.decode(errors="replace")
            if text in line:
                try:
                    return time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")) + int(line[20:23]) / 1000
                except ValueError:
                    return None
    return None


# --- the API server alone: creates per second (`--api`) -----------------------------


def _cpu_of(pids: list[int]) -> list[float]:
    return [_cpu_seconds(p) for p in pids]


def run_api(
    existing: int = 1000,
    creates: int = 1000,
    members: int = 10,
    workers: int = 8,
    rounds: int = 3,
    progress: Callable[[dict[str, object]], None] | None = None,
) -> dict[str, object]:
    """The API server's own rate: etcd and the API server as processes, no
    operator and no agents (nothing else takes the cores, and no status
    write competes). The store is filled with `existing` load balancers of
    `members` members, then `rounds` times `creates` more are created by
    `workers` clients at once (one API call, one store transaction each).
    Per round: creates per second, and CPU per create of the API server, of
    etcd and of the clients (this process), from /proc (10 ms ticks): the
    API server's CPU per create says how many creates one core of it
    sustains, whatever else the machine runs."""
    with contextlib.ExitStack() as stack:
        pin_root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="xdsr-cpa-")))
        cluster = LocalCluster([], pin_root)
        stack.callback(cluster.close)
        cluster.etcd.start()
        cluster.apiserver.start()
        assert cluster.etcd.proc is not None
        pids = [cluster.apiserver.pid, cluster.etcd.proc.pid]

        total = existing + rounds * creates
        base = int(ipaddress.IPv4Address("198.20.0.1"))
        bodies = _encoded(
            [lb_body(f"api{i}", str(ipaddress.IPv4Address(base + i)), members, 100 + i) for i in range(total)]
        )
        creator = stack.enter_context(_creator(cluster, workers))
        t0 = time.perf_counter()
        creator(bodies[:existing])
        filled = time.perf_counter() - t0

        out: list[dict[str, float]] = []
        doc: dict[str, object] = {
            "existing": existing,
            "creates_per_round": creates,
            "members_each": members,
            "client_workers": workers,
            "fill_s": filled,
            "rounds": out,
        }
        for r in range(rounds):
            batch = bodies[existing + r * creates : existing + (r + 1) * creates]
            load = os.getloadavg()[0]
            cpu0, me0 = _cpu_of(pids), os.times()
            t = time.perf_counter()
            creator(batch)
            seconds = time.perf_counter() - t
            cpu1, me1 = _cpu_of(pids), os.times()
            api_cpu = (cpu1[0] - cpu0[0]) / len(batch)
            out.append(
                {
                    "existing_before": existing + r * creates,
                    "seconds": seconds,
                    "creates_per_s": len(batch) / seconds,
                    "apiserver_cpu_ms_per_create": api_cpu * 1000,
                    "etcd_cpu_ms_per_create": (cpu1[1] - cpu0[1]) / len(batch) * 1000,
                    "client_cpu_ms_per_create": (me1.user + me1.system - me0.user - me0.system) / len(batch) * 1000,
                    # One core given to the API server alone would take this many.
                    "apiserver_creates_per_core_s": 1 / api_cpu if api_cpu else 0.0,
                    "load_average_1m_before": load,
                }
            )
            if progress is not None:
                progress(doc)

        def spread(key: str) -> dict[str, float]:
            xs = [x[key] for x in out]
            return {"min": min(xs), "median": statistics.median(xs), "max": max(xs)}

        doc["summary"] = {
            k: spread(k)
            for k in (
                "creates_per_s",
                "apiserver_cpu_ms_per_create",
                "etcd_cpu_ms_per_create",
                "client_cpu_ms_per_create",
                "apiserver_creates_per_core_s",
            )
        }
        return doc
