"""Benchmark: how many rollouts one operator replica keeps up with, on the local cluster's API server and
Prometheus.

    .venv/bin/python -m loadtests.bench_scale [--rollouts 100,1000,10000] [--interval 10s] [--probes 10]

Per size N, in a namespace of its own: N SeldonDeployments that the local data plane does not serve and
N ModelRollouts, one per deployment, held at 10% by an indefinite pause and analysed every --interval.
What they are analysed on (--metric):

- ``builtin`` (the default): the builtin ``request-success-rate`` template (min 0.9, minRequests 10),
  asked as grouped queries, on executor series (``localcluster.executor_exporter``, counts only) that
  serve both predictors of every deployment 5 requests a second without errors, scraped every second by
  a Prometheus of the benchmark's own: two grouped queries per instant (the request count and the success
  rate), however many rollouts are checked in it;
- ``constant``: an AnalysisTemplate of the user's kind, ``vector(1)`` (min 0.5, minRequests 0), through
  the local cluster's Prometheus (or --prometheus-url): a query per rollout and check, as every
  template was asked before grouped queries.

Every check passes either way. Everything is created (--workers requests in parallel) before one
operator process starts, watching only that namespace. Prints, per size:

- set-up: the time to create the 2N objects (not the operator's);
- all at 10%: from operator start until every rollout's status shows candidateWeight 10;
- new rollout: apply -> candidateWeight 10 for --probes rollouts created one at a time while the N are
  active (p50, p99);
- abort: the abort annotation -> phase Aborted, for --probes of the N (p50, p99);
- staleness: now minus each rollout's latest check (the operator's metric
  modelrollout_analysis_last_run_timestamp_seconds: the status shows a pass after a pass only at the
  status heartbeat), at --samples random moments of a steady period of --steady seconds, in seconds and
  analysis intervals (rollouts that started together are checked in step, so p50 follows the moments
  drawn; p99 says whether the operator keeps up: above 1 interval, checks come late);
- over that steady period: the operator's ticks and analyses per second, API server requests per second
  (every client of the API server; the busiest verb and resource
  pairs are printed below the table), Prometheus queries per second and per analysis interval, the
  operator's CPU (cores);
- the operator's peak RSS.

Each phase is bounded by --deadline (default: 120 s, or 0.06 s per rollout when that is more): the wait
for all N, and the new-rollout and abort probes, each phase as a whole. One that runs out prints "not
reached: only X of N after T s" (probes: how many missed) and the run goes on. Figures only: nothing is
asserted. Needs `make cluster-up` (its Prometheus for ``constant`` unless --prometheus-url). At the end of each size the
operator is stopped, then the rollouts' finalizers dropped and the namespace's objects and the namespace
deleted.

Soak, instead of the benchmark (the documented run is 1000 rollouts for 30 minutes):

    .venv/bin/python -m loadtests.bench_scale --soak 30m --rollouts 1000 [--churn 10] [--churn-every 10s]
        [--sample-every 60s]

The same set-up at one size N (default 1000), the operator started the same way, then, for --soak, churn:
every --churn-every (default: --interval) --churn of the live rollouts (default 1% of N, at least 1) are
aborted or deleted, by turns, and as many new ones (new names, new SeldonDeployments) take their place.
An aborted rollout is deleted one round later; a deleted rollout's deployment goes once the rollout has
(the operator rolls its traffic back first). So the operator's caches, its per-rollout series and its
scheduler see objects come and go. Every --sample-every, and at the end, one line: seconds since the soak
began, the operator's RSS (VmRSS), the lines of its /metrics labelled with a rollout and how many rollouts
they name, the rollouts the API server holds and how many of them are at 10%, the rollouts created,
aborted and deleted (gone from the API server) so far, and the operator's ticks so far. At the end: RSS
at the start, its sampled peak and at the end (and VmHWM), the RSS slope in MiB per 10 minutes with its
standard error (least squares over the samples after the first 20% of the soak: start-up growth left
out), and the per-rollout series at the start and the end. An operator that keeps no trace of deleted
rollouts has a slope near 0 within its error, and its series follow the rollouts that exist (six lines
per checked rollout), not all that were ever created. The soak stops by itself after --soak; the operator
is stopped and everything cleaned up as above.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import re
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from scipy import stats

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from modelrollout.api import (  # noqa: E402
    GROUP,
    PLURAL,
    SELDON_GROUP,
    SELDON_PLURAL,
    SELDON_VERSION,
    TEMPLATE_PLURAL,
    VERSION,
    Phase,
    SpecError,
    parse_duration,
)
from modelrollout.reconcile import ACTION_ANNOTATION  # noqa: E402

from localcluster import services as local_services  # noqa: E402
from localcluster.executor_exporter import ExecutorExporter, Traffic  # noqa: E402
from localcluster.processes import free_port  # noqa: E402
from localcluster.prometheus import PrometheusServer  # noqa: E402
from testkit.kube import Kube, running_cluster  # noqa: E402
from testkit.processes import OperatorProcess  # noqa: E402
from testkit.rollouts import model_rollout  # noqa: E402
from testkit.seldon import digits_sdep  # noqa: E402

FIRST_WEIGHT = 10
HOLD: list[dict[str, Any]] = [{"setWeight": FIRST_WEIGHT}, {"pause": {}}, {"setWeight": 100}]
TEMPLATE = "always-pass"
CANDIDATE = "main-candidate"  # the candidate predictor model_rollout's rollouts create
SERVED = Traffic(rps=5.0)  # each predictor of each deployment, with --metric builtin
SCRAPES_PER_WINDOW = 4  # the operator refuses a window of fewer scrapes
PROBE_POLL_S = 0.05  # one object, read this often while a probe waits
PAGE = 500  # rollouts per page of a full LIST
# A Table LIST returns the CRD's printer columns (Phase, Weight) instead of whole objects: the poll for
# "all at 10%" then costs the API server and this process little however many rollouts there are.
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
SAMPLE_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
ROLLOUT_LABEL = re.compile(r'[{,]rollout="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Settings:
    interval: str = "10s"
    probes: int = 10  # new rollouts, and aborts
    samples: int = 5  # staleness samples in the steady period
    steady_s: float | None = None  # None: 3 analysis intervals, at least 30 s
    deadline_s: float | None = None  # None: scaled with the size
    workers: int = 32  # parallel requests while setting up and cleaning up
    poll_s: float = 1.0  # between LISTs while waiting for all rollouts
    seed: int = 1
    scrape_interval_s: float = 1.0  # what the operator is told; with --metric builtin, how often it is so
    operator_args: tuple[str, ...] = ()  # more options for the operator process

    @property
    def interval_s(self) -> float:
        return parse_duration(self.interval, "--interval")

    @property
    def window_s(self) -> float:
        return max(self.interval_s, SCRAPES_PER_WINDOW * self.scrape_interval_s)

    def steady(self) -> float:
        return self.steady_s if self.steady_s is not None else max(30.0, 3 * self.interval_s)

    def deadline(self, rollouts: int) -> float:
        return self.deadline_s if self.deadline_s is not None else max(120.0, 0.06 * rollouts)


@dataclass
class Wait:
    """A bounded wait for `total` things: how long it took, or how many were reached when it ran out."""

    seconds: float
    reached: int
    total: int

    @property
    def done(self) -> bool:
        return self.reached >= self.total

    def render(self) -> str:
        return f"{self.seconds:.1f}s" if self.done else \
            f"not reached: only {self.reached} of {self.total} after {self.seconds:.0f} s"


@dataclass
class Timings:
    """Per-probe times of the probes that got there; `missed` did not before the phase's deadline."""

    seconds: list[float] = field(default_factory=list)
    missed: int = 0

    def render(self) -> str:
        if not self.seconds:
            return f"none reached ({self.missed} missed)" if self.missed else "-"
        text = f"{percentile(self.seconds, 0.5):.2f} / {percentile(self.seconds, 0.99):.2f}s"
        return text + (f" ({self.missed} not reached by the deadline)" if self.missed else "")


@dataclass
class Rates:
    """Per second over the steady period."""

    seconds: float = 0.0
    ticks: float = 0.0
    analyses: float = 0.0
    tick_errors: float = 0.0
    api_requests: float = 0.0
    api_by_kind: dict[str, float] = field(default_factory=dict)  # "VERB resource[/subresource]"
    rollout_watch_events: float = 0.0  # modelrollouts events the API server sent its watchers
    rollout_watch_bytes: float = 0.0
    prometheus_queries: float = 0.0
    cpu_cores: float = 0.0
    # Cores by process over the period ("machine": every process, from /proc/stat): which one is the wall.
    cpu_by_process: dict[str, float] = field(default_factory=dict)


@dataclass
class SizeResult:
    rollouts: int
    interval_s: float
    namespace: str
    setup_s: float = 0.0
    first_weight: Wait | None = None
    first_check: Wait | None = None
    new_rollout: Timings = field(default_factory=Timings)
    abort: Timings = field(default_factory=Timings)
    staleness_s: list[float] = field(default_factory=list)
    never_checked: int = 0  # rollouts without a check, summed over the samples
    metric: str = "constant"
    rates: Rates = field(default_factory=Rates)
    peak_rss_mib: float = 0.0
    operator_log: str = ""

    def summary(self) -> dict[str, Any]:
        """The figures as one flat JSON object (percentiles, not every reading)."""
        def pct(values: Sequence[float], q: float, scale: float = 1.0) -> float | None:
            return round(percentile(values, q) / scale, 3) if values else None

        first = self.first_weight
        out: dict[str, Any] = {
            "rollouts": self.rollouts, "interval_s": self.interval_s, "setup_s": round(self.setup_s, 2),
            "first_weight_s": round(first.seconds, 2) if first else None,
            "first_weight_reached": first.reached if first else 0,
            "first_check_s": round(self.first_check.seconds, 2) if self.first_check else None,
            "first_check_reached": self.first_check.reached if self.first_check else 0,
            "never_checked": self.never_checked, "peak_rss_mib": round(self.peak_rss_mib, 1)}
        for name, timings in (("new_rollout", self.new_rollout), ("abort", self.abort)):
            out |= {f"{name}_p50_s": pct(timings.seconds, 0.5), f"{name}_p99_s": pct(timings.seconds, 0.99),
                    f"{name}_missed": timings.missed}
        out |= {"staleness_p50_s": pct(self.staleness_s, 0.5), "staleness_p99_s": pct(self.staleness_s, 0.99),
                "staleness_p50_intervals": pct(self.staleness_s, 0.5, self.interval_s),
                "staleness_p99_intervals": pct(self.staleness_s, 0.99, self.interval_s)}
        rates = asdict(self.rates)
        rates["api_by_kind"] = {k: round(v, 2) for k, v in list(self.rates.api_by_kind.items())[:10]}
        return out | {k: round(v, 3) if isinstance(v, float) else v for k, v in rates.items()}


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest rank: the smallest value with at least a share q of the values at or below it."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# ---------------------------------------------------------------- the cluster


class Cluster:
    """The API server through one client whose connection pool fits `workers` threads."""

    def __init__(self, kube: Kube, workers: int) -> None:
        cfg = client.Configuration()
        config.load_kube_config(config_file=str(kube.kubeconfig),  # type: ignore[no-untyped-call]
                                client_configuration=cfg)
        cfg.connection_pool_maxsize = workers + 4
        self.api_client = client.ApiClient(cfg)
        self.custom = client.CustomObjectsApi(self.api_client)
        self.core = client.CoreV1Api(self.api_client)
        self.kube = kube
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="bench")

    def in_parallel(self, call: Callable[[Any], object], items: Iterable[Any]) -> None:
        """call(item) for every item on the pool; the first failure is raised once all have run."""
        for future in [self.pool.submit(call, item) for item in items]:
            future.result()

    def create(self, namespace: str, group: str, version: str, plural: str, body: dict[str, Any]) -> None:
        for attempt in range(4):  # a busy API server may answer 429 or time out; try again a little later
            try:
                self.custom.create_namespaced_custom_object(group, version, namespace, plural, body,
                                                            _request_timeout=60)
                return
            except ApiException as exc:
                if exc.status not in (429, 500, 503, 504) or attempt == 3:
                    raise
            except OSError:
                if attempt == 3:
                    raise
            time.sleep(0.5 * (attempt + 1))

    def rollout(self, namespace: str, name: str) -> dict[str, Any]:
        obj: Any = self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name,
                                                            _request_timeout=30)
        return dict(obj)

    def get_raw(self, path: str, query: Sequence[tuple[str, str]] = (), accept: str = "application/json") -> bytes:
        """A GET of any API server path, its body unparsed."""
        method, url, headers, _, _ = self.api_client.param_serialize(
            "GET", path, query_params=list(query), header_params={"Accept": accept}, auth_settings=["BearerToken"])
        response = self.api_client.call_api(method, url, headers, _request_timeout=60)
        if not 200 <= response.status < 300:
            raise ApiException(status=response.status, reason=response.reason)
        return bytes(response.response.data)

    def weights(self, namespace: str) -> dict[str, tuple[str, int | None]]:
        """Every rollout's (phase, candidateWeight) from one Table LIST."""
        table = json.loads(self.get_raw(f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}",
                                        [("includeObject", "None")], accept=TABLE))
        columns = [c["name"] for c in table.get("columnDefinitions") or []]
        name, phase, weight = columns.index("Name"), columns.index("Phase"), columns.index("Weight")
        return {row["cells"][name]: (row["cells"][phase] or "", row["cells"][weight])
                for row in table.get("rows") or []}

    def rollout_pages(self, namespace: str) -> Iterable[tuple[float, list[dict[str, Any]]]]:
        """Every rollout, a page at a time, each with the wall time it arrived."""
        token = None
        while True:
            page: Any = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, limit=PAGE,
                                                                  _continue=token, _request_timeout=120)
            yield time.time(), list(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return

    def apiserver_metrics(self) -> str:
        return self.get_raw("/metrics", accept="text/plain").decode()


def samples(text: str, names: set[str]) -> Iterable[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of the named series in a Prometheus text exposition."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(tuple(names)):
            continue
        match = SAMPLE_LINE.match(line)
        if match and match.group(1) in names:
            yield match.group(1), dict(LABEL.findall(match.group(2) or "")), float(match.group(3))


def http_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return str(resp.read().decode())


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# The local cluster's processes the figures name, by the start of their command name (/proc/<pid>/comm).
NAMED_PROCESSES = (("kube-apiserver", "kube-apiserver"), ("etcd", "etcd"), ("prometheus", "Prometheus"))


def cpu_by_process(operator_pid: int) -> dict[tuple[str, int], float]:
    """CPU seconds of the operator, this benchmark (its executor exporter serves from here), the local
    cluster's named processes, and the whole machine (busy time of every CPU, pid 0)."""
    found = {("operator", operator_pid): cpu_seconds(operator_pid),
             ("benchmark and its exporter", os.getpid()): cpu_seconds(os.getpid())}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):  # a process that ended meanwhile
            comm = (entry / "comm").read_text().strip()
            label = next((name for prefix, name in NAMED_PROCESSES if comm.startswith(prefix)), None)
            if label is not None:
                found[(label, int(entry.name))] = cpu_seconds(int(entry.name))
    ticks = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    found[("machine", 0)] = (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")
    return found


def cores_by_process(before: dict[tuple[str, int], float], after: dict[tuple[str, int], float],
                     seconds: float) -> dict[str, float]:
    """Cores per label over the period, from processes alive at both ends."""
    cores: dict[str, float] = {}
    for key, used in after.items():
        if key in before:
            cores[key[0]] = cores.get(key[0], 0.0) + (used - before[key]) / seconds
    return cores


def memory_mib(pid: int, field: str) -> float:
    """A memory figure of a process in MiB, from /proc/<pid>/status: VmRSS (now) or VmHWM (its peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Snapshot:
    at: float
    cpu_s: float
    ticks: float
    analyses: float
    tick_errors: float
    api: dict[str, float]  # "VERB resource[/subresource]" -> requests
    watch_events: float
    watch_bytes: float
    prometheus_queries: float
    cpu: dict[tuple[str, int], float] = field(default_factory=dict)


def snapshot(cluster: Cluster, operator_pid: int, metrics_url: str, prometheus_url: str) -> Snapshot:
    """The counters the rates come from, read at (nearly) one moment."""
    operator = list(samples(http_text(metrics_url), {"modelrollout_tick_duration_seconds_count",
                                                    "modelrollout_provider_queries_total",
                                                    "modelrollout_tick_errors_total"}))
    api: dict[str, float] = {}
    events, sizes = 0.0, 0.0
    for name, labels, value in samples(cluster.apiserver_metrics(), {"apiserver_request_total",
                                                                      "apiserver_watch_events_total",
                                                                      "apiserver_watch_events_sizes_sum"}):
        if name == "apiserver_request_total":
            resource = labels.get("resource") or labels.get("subresource", "")
            if labels.get("resource") and labels.get("subresource"):
                resource += f"/{labels['subresource']}"
            key = f"{labels.get('verb', '')} {resource}"
            api[key] = api.get(key, 0.0) + value
        elif labels.get("resource") == PLURAL and labels.get("group") == GROUP:
            if name == "apiserver_watch_events_total":
                events += value
            else:
                sizes += value
    queries = sum(v for _, labels, v in samples(http_text(f"{prometheus_url}/metrics"),
                                                 {"prometheus_http_requests_total"})
                  if labels.get("handler") in ("/api/v1/query", "/api/v1/query_range"))

    def total(name: str) -> float:
        return sum(v for n, _, v in operator if n == name)

    return Snapshot(at=time.monotonic(), cpu_s=cpu_seconds(operator_pid),
                    ticks=total("modelrollout_tick_duration_seconds_count"),
                    analyses=total("modelrollout_provider_queries_total"),
                    tick_errors=total("modelrollout_tick_errors_total"), api=api, watch_events=events,
                    watch_bytes=sizes, prometheus_queries=queries, cpu=cpu_by_process(operator_pid))


def rates(before: Snapshot, after: Snapshot) -> Rates:
    seconds = after.at - before.at
    by_kind = {k: (after.api[k] - before.api.get(k, 0.0)) / seconds for k in after.api}
    by_kind = {k: v for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1]) if v > 0}
    return Rates(seconds=seconds, ticks=(after.ticks - before.ticks) / seconds,
                 analyses=(after.analyses - before.analyses) / seconds,
                 tick_errors=(after.tick_errors - before.tick_errors) / seconds,
                 api_requests=sum(by_kind.values()), api_by_kind=by_kind,
                 rollout_watch_events=(after.watch_events - before.watch_events) / seconds,
                 rollout_watch_bytes=(after.watch_bytes - before.watch_bytes) / seconds,
                 prometheus_queries=(after.prometheus_queries - before.prometheus_queries) / seconds,
                 cpu_cores=(after.cpu_s - before.cpu_s) / seconds,
                 cpu_by_process=cores_by_process(before.cpu, after.cpu, seconds))


# ---------------------------------------------------------------- one size


def analysis(interval: str, window_s: float, builtin: bool) -> dict[str, Any]:
    """Checked every interval: on the builtin success rate of the served series (grouped queries), or on a
    constant through Prometheus (one query per check). Every check passes."""
    if builtin:
        return {"interval": interval, "failureLimit": 2, "inconclusiveLimit": 3, "minRequests": 10,
                "metrics": [{"name": "success-rate", "template": "request-success-rate", "min": 0.9,
                             "window": f"{window_s:g}s"}]}
    return {"interval": interval, "failureLimit": 2, "inconclusiveLimit": 3, "minRequests": 0,
            "metrics": [{"name": "constant", "templateRef": {"name": TEMPLATE}, "min": 0.5,
                         "window": f"{window_s:g}s"}]}


def serve(exporter: ExecutorExporter | None, namespace: str, names: Iterable[str]) -> None:
    """Both predictors of each deployment get requests, as far as Prometheus can tell (--metric builtin)."""
    if exporter is None:
        return
    for name in names:
        for predictor in ("main", CANDIDATE):
            exporter.set(namespace, name, predictor, SERVED)


def rollout_pair(name: str, spec_analysis: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A deployment the data plane leaves alone (nothing serves it) and a rollout of it, both called `name`."""
    return (digits_sdep("1.0.0", name=name, served=False),
            model_rollout(steps=HOLD, analysis=spec_analysis, name=name, target=name))


def set_up(cluster: Cluster, namespace: str, names: Sequence[str], spec_analysis: dict[str, Any]) -> None:
    cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    cluster.create(namespace, GROUP, VERSION, TEMPLATE_PLURAL, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "AnalysisTemplate", "metadata": {"name": TEMPLATE},
        "spec": {"description": "a constant: every check passes", "query": "vector(1)"}})
    pairs = [rollout_pair(name, spec_analysis) for name in names]
    cluster.in_parallel(lambda sdep: cluster.create(namespace, SELDON_GROUP, SELDON_VERSION, SELDON_PLURAL, sdep),
                        (sdep for sdep, _ in pairs))
    cluster.in_parallel(lambda mro: cluster.create(namespace, GROUP, VERSION, PLURAL, mro),
                        (mro for _, mro in pairs))


def wait_until_all(count: Callable[[], int], total: int, started: float, deadline_s: float, poll_s: float,
                   label: str, what: str) -> Wait:
    """Poll ``count`` (a failed read counts as "not yet") until it reaches ``total`` or the deadline,
    printing progress every 10 s."""
    reached, reported = 0, time.monotonic()
    while True:
        with contextlib.suppress(ApiException, OSError):
            reached = count()
        now = time.monotonic()
        if reached >= total or now - started >= deadline_s:
            return Wait(now - started, reached, total)
        if now - reported >= 10:
            print(f"{label}: {reached} of {total} {what} after {now - started:.0f}s", flush=True)
            reported = now
        time.sleep(poll_s)


def wait_all_at_first_weight(cluster: Cluster, namespace: str, total: int, started: float, deadline_s: float,
                             poll_s: float, label: str) -> Wait:
    return wait_until_all(
        lambda: sum(1 for _, weight in cluster.weights(namespace).values() if weight == FIRST_WEIGHT),
        total, started, deadline_s, poll_s, label, f"at {FIRST_WEIGHT}%")


def wait_all_checked(metrics_url: str, namespace: str, total: int, started: float, deadline_s: float,
                     poll_s: float, label: str) -> Wait:
    """Until every rollout's first check is done (the operator's last-run gauge names it): the steady
    period measures checks that repeat, not the burst of first ones."""
    return wait_until_all(lambda: len(staleness(metrics_url, namespace, total)[0]), total, started, deadline_s,
                          poll_s, label, "checked")


def poll_one(cluster: Cluster, namespace: str, name: str, until: Callable[[dict[str, Any]], bool],
             start: float, end: float) -> float | None:
    """Seconds from start until the rollout satisfies `until`; None if it does not before `end`."""
    while time.monotonic() < end:
        with contextlib.suppress(ApiException, OSError):
            if until(cluster.rollout(namespace, name)):
                return time.monotonic() - start
        time.sleep(PROBE_POLL_S)
    return None


def status_of(obj: dict[str, Any]) -> dict[str, Any]:
    return dict(obj.get("status") or {})


def probe_new_rollouts(cluster: Cluster, namespace: str, count: int, spec_analysis: dict[str, Any],
                       deadline_s: float, exporter: ExecutorExporter | None = None) -> Timings:
    """Apply -> first weight, one new rollout at a time (its deployment exists before the clock starts)."""
    timings, end = Timings(), time.monotonic() + deadline_s
    for i in range(count):
        sdep, mro = rollout_pair(f"probe-{i + 1:03d}", spec_analysis)
        serve(exporter, namespace, [mro["metadata"]["name"]])
        cluster.create(namespace, SELDON_GROUP, SELDON_VERSION, SELDON_PLURAL, sdep)
        start = time.monotonic()
        cluster.create(namespace, GROUP, VERSION, PLURAL, mro)
        took = poll_one(cluster, namespace, mro["metadata"]["name"],
                        lambda o: status_of(o).get("candidateWeight") == FIRST_WEIGHT, start, end)
        if took is None:
            timings.missed = count - i
            break
        timings.seconds.append(took)
    return timings


def probe_aborts(cluster: Cluster, namespace: str, names: Sequence[str], deadline_s: float) -> Timings:
    """Annotation -> phase Aborted, one rollout at a time."""
    timings, end = Timings(), time.monotonic() + deadline_s
    patch = {"metadata": {"annotations": {ACTION_ANNOTATION: "abort"}}}
    for i, name in enumerate(names):
        start = time.monotonic()
        cluster.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, patch,
                                                      _request_timeout=30)
        took = poll_one(cluster, namespace, name, lambda o: status_of(o).get("phase") == Phase.ABORTED, start, end)
        if took is None:
            timings.missed = len(names) - i
            break
        timings.seconds.append(took)
    return timings


def staleness(metrics_url: str, namespace: str, rollouts: int) -> tuple[list[float], int]:
    """Now minus every rollout's latest check, in seconds, and how many have no check yet."""
    text = http_text(metrics_url)
    now = time.time()
    ages = [now - value for _, labels, value in samples(text, {"modelrollout_analysis_last_run_timestamp_seconds"})
            if labels.get("namespace") == namespace]
    return ages, max(0, rollouts - len(ages))


def steady_period(cluster: Cluster, namespace: str, operator: OperatorProcess, metrics_url: str,
                  prometheus_url: str, settings: Settings, result: SizeResult) -> None:
    """Counters at both ends of the period; staleness at random moments in between."""
    assert operator.proc is not None
    length = settings.steady()
    moments = sorted(random.Random(settings.seed).uniform(0.1, 0.9) * length for _ in range(settings.samples))
    before = snapshot(cluster, operator.proc.pid, metrics_url, prometheus_url)
    for moment in moments:
        time.sleep(max(0.0, before.at + moment - time.monotonic()))
        ages, never = staleness(metrics_url, namespace, result.rollouts)
        result.staleness_s.extend(ages)
        result.never_checked += never
    time.sleep(max(0.0, before.at + length - time.monotonic()))
    result.rates = rates(before, snapshot(cluster, operator.proc.pid, metrics_url, prometheus_url))


def clean_up(cluster: Cluster, namespace: str) -> None:
    """With the operator stopped: drop the rollback finalizers (their deployments go too), delete every
    object, then the namespace (no controller manager runs to delete what it holds)."""
    held = [obj["metadata"]["name"] for _, items in cluster.rollout_pages(namespace) for obj in items
            if obj["metadata"].get("finalizers")]
    unhold = {"metadata": {"finalizers": None}}
    cluster.in_parallel(lambda name: cluster.custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, unhold, _request_timeout=60), held)
    # An API server loaded with 2N objects may time a collection delete out (504): say so and go on, so
    # that the namespace is still deleted and later sizes still run.
    def collection(group: str, version: str, plural: str) -> Callable[[], object]:
        return lambda: cluster.custom.delete_collection_namespaced_custom_object(group, version, namespace, plural,
                                                                                 _request_timeout=300)

    deletions: list[tuple[str, Callable[[], object]]] = [
        (plural, collection(group, version, plural))
        for group, version, plural in ((GROUP, VERSION, PLURAL), (GROUP, VERSION, TEMPLATE_PLURAL),
                                       (SELDON_GROUP, SELDON_VERSION, SELDON_PLURAL))]
    deletions.append(("events", lambda: cluster.core.delete_collection_namespaced_event(namespace,
                                                                                          _request_timeout=300)))
    deletions.append(("the namespace", lambda: cluster.core.delete_namespace(namespace, _request_timeout=60)))
    for what, delete in deletions:
        try:
            delete()
        except ApiException as exc:
            print(f"clean-up of {namespace}: deleting {what} failed ({exc.status} {exc.reason}); going on", flush=True)


@dataclass
class HeldRollouts:
    """N rollouts set up in a namespace of their own, and the one operator process watching them."""

    cluster: Cluster
    namespace: str
    names: list[str]
    spec_analysis: dict[str, Any]
    operator: OperatorProcess
    operator_pid: int
    metrics_url: str
    setup_s: float
    first_weight: Wait
    first_check: Wait
    operator_log: str


@contextlib.contextmanager
def rollouts_held(kube: Kube, prometheus_url: str, rollouts: int, settings: Settings, workdir: Path,
                  prefix: str, label: str, exporter: ExecutorExporter | None = None) -> Iterator[HeldRollouts]:
    """Create N rollouts and their deployments, start the operator, wait until every rollout is at the
    first weight (or the deadline) and its first checks are due; after the body, always stop the operator,
    then remove what was made (in that order: a running operator would race the clean-up's deletions).
    With ``exporter``, the rollouts are judged on the builtin success rate of the series it serves."""
    cluster = Cluster(kube, settings.workers)
    namespace = f"{prefix}-{uuid.uuid4().hex[:6]}"
    names = [f"digits-{i:05d}" for i in range(1, rollouts + 1)]
    spec_analysis = analysis(settings.interval, settings.window_s, builtin=exporter is not None)
    operator: OperatorProcess | None = None
    try:
        print(f"{label}: creating {rollouts} SeldonDeployments and ModelRollouts in {namespace}", flush=True)
        serve(exporter, namespace, names)  # Prometheus takes seconds to scrape a new target: first
        started = time.monotonic()
        set_up(cluster, namespace, names, spec_analysis)
        setup_s = time.monotonic() - started

        metrics_port = free_port()
        log = workdir / f"operator-{namespace}.log"
        started = time.monotonic()
        operator = OperatorProcess(kube, log, extra_args=(
            "--namespace", namespace, "--prometheus-url", prometheus_url, "--metrics-port", str(metrics_port),
            "--scrape-interval", f"{settings.scrape_interval_s:g}s", *settings.operator_args,
        )).start()
        assert operator.proc is not None
        first_weight = wait_all_at_first_weight(cluster, namespace, rollouts, started, settings.deadline(rollouts),
                                                settings.poll_s, label)
        print(f"{label}: all at {FIRST_WEIGHT}%: {first_weight.render()}", flush=True)
        # Steady state once every rollout's first check is done (its first window after the weight), and
        # one more interval.
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        first_check = wait_all_checked(metrics_url, namespace, rollouts, started,
                                       settings.deadline(rollouts) + settings.window_s, settings.poll_s, label)
        print(f"{label}: all checked once: {first_check.render()}", flush=True)
        time.sleep(settings.interval_s)
        yield HeldRollouts(cluster=cluster, namespace=namespace, names=names, spec_analysis=spec_analysis,
                           operator=operator, operator_pid=operator.proc.pid,
                           metrics_url=metrics_url, setup_s=setup_s, first_weight=first_weight,
                           first_check=first_check, operator_log=str(log))
    finally:
        if operator is not None:
            operator.stop(timeout=60)
        clean_up(cluster, namespace)
        cluster.pool.shutdown()
        if exporter is not None:
            exporter.drop(namespace)


def run_size(kube: Kube, prometheus_url: str, rollouts: int, settings: Settings, workdir: Path,
             exporter: ExecutorExporter | None = None) -> SizeResult:
    """Set up N rollouts, start the operator, measure; always stop it and remove what was made. With
    ``exporter`` (serving the series ``prometheus_url`` scrapes), the builtin success rate is the metric."""
    label = f"N={rollouts}"
    deadline_s = settings.deadline(rollouts)
    with rollouts_held(kube, prometheus_url, rollouts, settings, workdir, f"scale-{rollouts}", label,
                       exporter) as held:
        result = SizeResult(rollouts=rollouts, interval_s=settings.interval_s, namespace=held.namespace,
                            setup_s=held.setup_s, first_weight=held.first_weight, first_check=held.first_check,
                            operator_log=held.operator_log,
                            metric="builtin" if exporter is not None else "constant")
        print(f"{label}: steady period of {settings.steady():.0f}s", flush=True)
        steady_period(held.cluster, held.namespace, held.operator, held.metrics_url, prometheus_url, settings,
                      result)

        print(f"{label}: {settings.probes} new rollouts, then {settings.probes} aborts", flush=True)
        result.new_rollout = probe_new_rollouts(held.cluster, held.namespace, settings.probes, held.spec_analysis,
                                                deadline_s, exporter)
        chosen = random.Random(settings.seed).sample(held.names, min(settings.probes, rollouts))
        result.abort = probe_aborts(held.cluster, held.namespace, chosen, deadline_s)
        result.peak_rss_mib = memory_mib(held.operator_pid, "VmHWM")
        # Before the clean-up: an API server that times out while 2N objects go must not lose the figures.
        print(render([result], settings.interval), flush=True)
    return result


# ---------------------------------------------------------------- soak


@dataclass(frozen=True)
class SoakSettings:
    duration_s: float
    churn: int  # rollouts replaced per round
    churn_every_s: float
    sample_every_s: float


@dataclass(frozen=True)
class SoakSample:
    elapsed_s: float
    rss_mib: float
    series: int  # lines of the operator's /metrics labelled with a rollout
    series_rollouts: int  # the distinct rollouts those lines name
    existing: int  # ModelRollouts the API server holds in the namespace (aborted and deleting ones too)
    held: int  # of those, at the first weight
    created: int  # replacements so far
    aborted: int
    deleted: int  # gone from the API server
    ticks: float  # the operator's ticks since it started


@dataclass
class SoakResult:
    rollouts: int
    interval_s: float
    namespace: str
    settings: SoakSettings
    setup_s: float = 0.0
    first_weight: Wait | None = None
    samples: list[SoakSample] = field(default_factory=list)
    peak_rss_mib: float = 0.0  # VmHWM: set-up and the moments between samples included
    operator_log: str = ""

    def rss_trend(self) -> tuple[float, float, int] | None:
        """RSS slope in MiB per 10 minutes, its standard error and the samples it is fitted on: a
        least-squares line through the samples after the first 20% of the soak (start-up growth left out)."""
        late = [s for s in self.samples if s.elapsed_s >= 0.2 * self.settings.duration_s]
        if len(late) < 3:  # two points always fit exactly: no error to speak of
            return None
        fit = stats.linregress([s.elapsed_s for s in late], [s.rss_mib for s in late])
        return float(fit.slope) * 600, float(fit.stderr) * 600, len(late)

    def summary(self) -> dict[str, Any]:
        first, last = (self.samples[0], self.samples[-1]) if self.samples else (None, None)
        trend = self.rss_trend()
        return {
            "soak_s": self.settings.duration_s, "rollouts": self.rollouts, "churn": self.settings.churn,
            "churn_every_s": self.settings.churn_every_s, "samples": len(self.samples),
            "rss_start_mib": round(first.rss_mib, 1) if first else None,
            "rss_peak_sampled_mib": round(max(s.rss_mib for s in self.samples), 1) if self.samples else None,
            "rss_end_mib": round(last.rss_mib, 1) if last else None, "rss_hwm_mib": round(self.peak_rss_mib, 1),
            "rss_slope_mib_per_10min": round(trend[0], 3) if trend else None,
            "rss_slope_stderr": round(trend[1], 3) if trend else None,
            "series_start": first.series if first else None, "series_end": last.series if last else None,
            "created": last.created if last else 0, "aborted": last.aborted if last else 0,
            "deleted": last.deleted if last else 0}


class Churn:
    """Rollouts come and go as on a real cluster: each round, `per_round` of the live ones are aborted or
    deleted (by turns), and as many new ones (new names, new deployments) take their place. An aborted
    rollout stays, finished, until the next round deletes it. A deleted rollout's deployment goes only
    once the rollout has: the operator rolls the deployment's traffic back before it lets the rollout go."""

    def __init__(self, cluster: Cluster, namespace: str, names: Sequence[str], spec_analysis: dict[str, Any],
                 per_round: int, seed: int, serve: Callable[[Sequence[str]], None] = lambda _: None) -> None:
        self.cluster, self.namespace, self.spec_analysis = cluster, namespace, spec_analysis
        self.serve = serve
        self.per_round = per_round
        self.random = random.Random(seed)
        self.live = list(names)  # neither aborted nor deleted
        self.finished: list[str] = []  # aborted: deleted in the next round
        self.leaving: list[str] = []  # deleted, maybe still held by the operator's finalizer
        self.next_number = len(names) + 1
        self.created = self.aborted = self.deleted = 0

    def round(self) -> None:
        present = set(self.cluster.weights(self.namespace))
        gone = [name for name in self.leaving if name not in present]
        self.cluster.in_parallel(lambda name: self._delete(SELDON_GROUP, SELDON_VERSION, SELDON_PLURAL, name), gone)
        self.deleted += len(gone)
        self.leaving = [name for name in self.leaving if name in present]

        self.cluster.in_parallel(lambda name: self._delete(GROUP, VERSION, PLURAL, name), self.finished)
        self.leaving += self.finished
        self.finished = []

        leaving = self.random.sample(self.live, min(self.per_round, len(self.live)))
        chosen = set(leaving)
        self.live = [name for name in self.live if name not in chosen]
        for turn, name in enumerate(leaving, start=self.created):  # abort, delete, abort... over all rounds
            if turn % 2 == 0:
                self.cluster.custom.patch_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL, name,
                    {"metadata": {"annotations": {ACTION_ANNOTATION: "abort"}}}, _request_timeout=30)
                self.finished.append(name)
                self.aborted += 1
            else:
                self._delete(GROUP, VERSION, PLURAL, name)
                self.leaving.append(name)

        newcomers = [f"digits-{number:05d}" for number in range(self.next_number, self.next_number + len(leaving))]
        self.next_number += len(newcomers)
        self.serve(newcomers)
        pairs = [rollout_pair(name, self.spec_analysis) for name in newcomers]
        self.cluster.in_parallel(lambda sdep: self.cluster.create(
            self.namespace, SELDON_GROUP, SELDON_VERSION, SELDON_PLURAL, sdep), (sdep for sdep, _ in pairs))
        self.cluster.in_parallel(lambda mro: self.cluster.create(self.namespace, GROUP, VERSION, PLURAL, mro),
                                 (mro for _, mro in pairs))
        self.live += newcomers
        self.created += len(newcomers)

    def _delete(self, group: str, version: str, plural: str, name: str) -> None:
        with contextlib.suppress(ApiException):  # 404: already gone; anything else: clean_up removes it
            self.cluster.custom.delete_namespaced_custom_object(group, version, self.namespace, plural, name,
                                                                _request_timeout=30)


def soak_sample(cluster: Cluster, namespace: str, operator_pid: int, metrics_url: str, elapsed_s: float,
                churn: Churn) -> SoakSample:
    text = http_text(metrics_url)
    labelled = [line for line in text.splitlines() if 'rollout="' in line]
    named = {match.group(1) for line in labelled if (match := ROLLOUT_LABEL.search(line))}
    weights = cluster.weights(namespace)
    return SoakSample(
        elapsed_s=elapsed_s, rss_mib=memory_mib(operator_pid, "VmRSS"), series=len(labelled),
        series_rollouts=len(named), existing=len(weights),
        held=sum(1 for _, weight in weights.values() if weight == FIRST_WEIGHT),
        created=churn.created, aborted=churn.aborted, deleted=churn.deleted,
        ticks=sum(v for _, _, v in samples(text, {"modelrollout_tick_duration_seconds_count"})))


def soak_loop(cluster: Cluster, namespace: str, operator_pid: int, metrics_url: str, churn: Churn,
              settings: SoakSettings, result: SoakResult, label: str) -> None:
    """Churn rounds and samples, in one thread (a round and a sample never overlap), until the soak's
    end, which always gets a sample of its own."""
    started = time.monotonic()
    end = started + settings.duration_s
    next_sample, next_round = started, started + settings.churn_every_s
    print(f"{label}: {SOAK_HEADER}", flush=True)
    while True:
        now = time.monotonic()
        if now >= next_round and next_round < end:
            churn.round()
            # A round that overran its interval is not made up for: churn stays at its rate, never bursts.
            next_round = max(next_round + settings.churn_every_s, time.monotonic())
        if now >= next_sample or now >= end:
            sample = soak_sample(cluster, namespace, operator_pid, metrics_url, time.monotonic() - started, churn)
            result.samples.append(sample)
            print(f"{label}: {render_soak_sample(sample)}", flush=True)
            if now >= end:
                return
            next_sample += settings.sample_every_s
        time.sleep(max(0.0, min(next_sample, next_round, end) - time.monotonic()))


def run_soak(kube: Kube, prometheus_url: str, rollouts: int, settings: Settings, soak: SoakSettings,
             workdir: Path, exporter: ExecutorExporter | None = None) -> SoakResult:
    """The benchmark's set-up, then churn and memory samples for soak.duration_s; always stops the operator
    and removes what was made."""
    label = f"soak N={rollouts}"
    with rollouts_held(kube, prometheus_url, rollouts, settings, workdir, f"soak-{rollouts}", label,
                       exporter) as held:
        result = SoakResult(rollouts=rollouts, interval_s=settings.interval_s, namespace=held.namespace,
                            settings=soak, setup_s=held.setup_s, first_weight=held.first_weight,
                            operator_log=held.operator_log)
        churn = Churn(held.cluster, held.namespace, held.names, held.spec_analysis, soak.churn, settings.seed,
                      lambda names: serve(exporter, held.namespace, names))
        soak_loop(held.cluster, held.namespace, held.operator_pid, held.metrics_url, churn, soak, result, label)
        result.peak_rss_mib = memory_mib(held.operator_pid, "VmHWM")
    return result


# ---------------------------------------------------------------- output


def render(results: Sequence[SizeResult], interval: str) -> str:
    """One column per size."""
    def stale(r: SizeResult, in_intervals: bool) -> str:
        if not r.staleness_s:
            return "-"
        scale = r.interval_s if in_intervals else 1.0
        p50, p99 = percentile(r.staleness_s, 0.5) / scale, percentile(r.staleness_s, 0.99) / scale
        text = f"{p50:.2f} / {p99:.2f}" + ("" if in_intervals else "s")
        return text + (f" ({r.never_checked} unchecked)" if r.never_checked and not in_intervals else "")

    rows: list[tuple[str, Callable[[SizeResult], str]]] = [
        ("set-up: create 2N objects", lambda r: f"{r.setup_s:.1f}s"),
        (f"operator start -> all at {FIRST_WEIGHT}%", lambda r: r.first_weight.render() if r.first_weight else "-"),
        ("operator start -> all checked once", lambda r: r.first_check.render() if r.first_check else "-"),
        (f"new rollout -> {FIRST_WEIGHT}%, p50 / p99", lambda r: r.new_rollout.render()),
        ("abort -> Aborted, p50 / p99", lambda r: r.abort.render()),
        ("analysis staleness p50 / p99", lambda r: stale(r, False)),
        ("  in intervals", lambda r: stale(r, True)),
        ("ticks/s", lambda r: f"{r.rates.ticks:.1f}"),
        ("analyses/s (needed: N / interval)", lambda r: f"{r.rates.analyses:.1f} ({r.rollouts / r.interval_s:.0f})"),
        ("tick errors/s", lambda r: f"{r.rates.tick_errors:.2f}"),
        ("API server requests/s", lambda r: f"{r.rates.api_requests:.1f}"),
        ("rollout watch events/s (KiB/s)",
         lambda r: f"{r.rates.rollout_watch_events:.1f} ({r.rates.rollout_watch_bytes / 1024:.0f})"),
        ("Prometheus queries/s", lambda r: f"{r.rates.prometheus_queries:.1f}"),
        ("  per interval (analyses per interval)",
         lambda r: f"{r.rates.prometheus_queries * r.interval_s:.0f} ({r.rates.analyses * r.interval_s:.0f})"),
        ("operator CPU, cores", lambda r: f"{r.rates.cpu_cores:.2f}"),
        ("operator peak RSS", lambda r: f"{r.peak_rss_mib:.0f} MiB"),
    ]
    cells = [[fn(r) for r in results] for _, fn in rows]
    widths = [max(len(f"N={r.rollouts}"), *(len(row[i]) for row in cells)) for i, r in enumerate(results)]
    first = max(len(name) for name, _ in rows)
    metrics = sorted({r.metric for r in results})
    on = {"builtin": "the builtin success rate, grouped queries", "constant": "a constant query per rollout"}
    lines = [f"\nOne operator replica, rollouts held at {FIRST_WEIGHT}% and analysed every {interval} "
             f"({'; '.join(on[m] for m in metrics)}, through Prometheus)\n",
             f"{'':<{first}}  " + "  ".join(f"{f'N={r.rollouts}':>{w}}" for r, w in zip(results, widths, strict=True))]
    for (name, _), row in zip(rows, cells, strict=True):
        lines.append(f"{name:<{first}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(row, widths, strict=True)))
    for r in results:
        busiest = ", ".join(f"{kind} {rate:.1f}" for kind, rate in list(r.rates.api_by_kind.items())[:6])
        lines.append(f"\nN={r.rollouts}: API server requests/s by verb and resource: {busiest or '-'}")
        cpu = r.rates.cpu_by_process
        if cpu:
            named = ", ".join(f"{k} {v:.2f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]) if k != "machine")
            lines.append(f"N={r.rollouts}: CPU cores by process: {named}; the machine {cpu.get('machine', 0.0):.2f} "
                         f"of {os.cpu_count()}")
        lines.append(f"N={r.rollouts}: steady period {r.rates.seconds:.0f}s, {len(r.staleness_s)} staleness "
                     f"readings; operator log {r.operator_log}")
    return "\n".join(lines)


SOAK_HEADER = (f"{'elapsed':>8}  {'RSS MiB':>8}  {'series':>7}  {'of rollouts':>11}  {'rollouts':>8}  "
               f"{'at ' + str(FIRST_WEIGHT) + '%':>6}  {'created':>7}  {'aborted':>7}  {'deleted':>7}  {'ticks':>8}")


def render_soak_sample(s: SoakSample) -> str:
    """One row under SOAK_HEADER."""
    return (f"{s.elapsed_s:>7.0f}s  {s.rss_mib:>8.1f}  {s.series:>7}  {s.series_rollouts:>11}  {s.existing:>8}  "
            f"{s.held:>6}  {s.created:>7}  {s.aborted:>7}  {s.deleted:>7}  {s.ticks:>8.0f}")


def render_soak(r: SoakResult) -> str:
    soak = r.settings
    lines = [f"\nSoak: one operator replica, {r.rollouts} rollouts held at {FIRST_WEIGHT}% and analysed every "
             f"{r.interval_s:g}s, {soak.churn} replaced every {soak.churn_every_s:g}s, for {soak.duration_s:g}s",
             f"set-up: {r.setup_s:.1f}s; operator start -> all at {FIRST_WEIGHT}%: "
             f"{r.first_weight.render() if r.first_weight else '-'}"]
    if not r.samples:
        return "\n".join([*lines, "no samples"])
    first, last = r.samples[0], r.samples[-1]
    lines.append(f"operator RSS: start {first.rss_mib:.1f} MiB, peak {max(s.rss_mib for s in r.samples):.1f} MiB, "
                 f"end {last.rss_mib:.1f} MiB (high-water mark {r.peak_rss_mib:.1f} MiB)")
    trend = r.rss_trend()
    lines.append("RSS slope after the first 20%: " + (
        f"{trend[0]:+.2f} MiB per 10 min (standard error {trend[1]:.2f}, {trend[2]} samples)" if trend
        else "too few samples (at least 3 after the first 20%)"))
    lines.append(f"per-rollout series: start {first.series} ({first.series_rollouts} rollouts), "
                 f"end {last.series} ({last.series_rollouts} rollouts); rollouts existing {first.existing} -> "
                 f"{last.existing}")
    lines.append(f"churn: {last.created} created, {last.aborted} aborted, {last.deleted} deleted; "
                 f"operator log {r.operator_log}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rollouts", default=None, help="sizes, comma-separated (default 100,1000); with "
                        "--soak one size (default 1000)")
    parser.add_argument("--interval", default="10s", help="analysis interval (default 10s)")
    parser.add_argument("--probes", type=int, default=10, help="new rollouts, and aborts, timed per size")
    parser.add_argument("--samples", type=int, default=5, help="staleness samples in the steady period")
    parser.add_argument("--steady", type=float, default=None, help="steady period, seconds (default: "
                        "3 intervals, at least 30)")
    parser.add_argument("--deadline", type=float, default=None, help="bound of each wait, seconds (default: "
                        "120, or 0.06 per rollout when more)")
    parser.add_argument("--workers", type=int, default=32, help="parallel requests while setting up")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between LISTs while waiting")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scrape-interval", default="1s", help="how often Prometheus scrapes, as the operator "
                        "is told (--scrape-interval) and, with --metric builtin, as the benchmark's Prometheus "
                        "does; windows hold at least 4 (default 1s; at 10,000 rollouts 2s, as one scrape of "
                        "20,000 series takes the benchmark's exporter most of a second)")
    parser.add_argument("--operator-arg", action="append", default=[], metavar="ARG",
                        help="one more option for the operator process, e.g. --operator-arg=--concurrency=64 "
                             "(repeatable)")
    parser.add_argument("--metric", choices=("builtin", "constant"), default="builtin",
                        help="builtin: the success rate of served series, grouped queries (default); constant: "
                             "a query of the user's kind per rollout")
    parser.add_argument("--prometheus-url", default=None, help="with --metric constant; default: the local "
                        "cluster's")
    parser.add_argument("--json", action="store_true", help="also print one JSON line per size (or the soak)")
    soak = parser.add_argument_group("soak (instead of the benchmark)")
    soak.add_argument("--soak", default=None, help="how long to soak, e.g. 30m")
    soak.add_argument("--churn", type=int, default=None, help="rollouts replaced per round (default: 1%% of "
                      "the rollouts, at least 1)")
    soak.add_argument("--churn-every", default=None, help="time between churn rounds (default: --interval)")
    soak.add_argument("--sample-every", default="60s", help="time between memory samples (default 60s)")
    args = parser.parse_args(argv)
    rollouts = args.rollouts or ("1000" if args.soak else "100,1000")
    args.sizes = [int(n) for n in rollouts.split(",") if n.strip()]
    if not args.sizes or min(args.sizes) < 1:
        parser.error("--rollouts: sizes of at least 1, comma-separated")

    def seconds(option: str, text: str) -> float:
        """A duration option in seconds; a malformed one is refused before anything is created."""
        try:
            return parse_duration(text, option)
        except SpecError as exc:
            parser.error(str(exc))  # it names the option

    interval_s = seconds("--interval", args.interval)
    args.settings = Settings(interval=args.interval, probes=max(0, args.probes), samples=max(1, args.samples),
                             steady_s=args.steady, deadline_s=args.deadline, workers=max(1, args.workers),
                             poll_s=args.poll, seed=args.seed,
                             scrape_interval_s=seconds("--scrape-interval", args.scrape_interval),
                             operator_args=tuple(args.operator_arg))
    args.soak_settings = None
    if args.soak is not None:
        if len(args.sizes) != 1:
            parser.error("--soak: one size in --rollouts")
        args.soak_settings = SoakSettings(
            duration_s=seconds("--soak", args.soak),
            churn=args.churn if args.churn is not None else max(1, args.sizes[0] // 100),
            churn_every_s=seconds("--churn-every", args.churn_every) if args.churn_every else interval_s,
            sample_every_s=seconds("--sample-every", args.sample_every))
        soak = args.soak_settings
        if min(soak.duration_s, soak.churn_every_s, soak.sample_every_s) <= 0 or soak.churn < 0:
            parser.error("--soak, --churn-every and --sample-every above 0, --churn at least 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    kube = running_cluster()
    workdir = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    with contextlib.ExitStack() as stack:
        exporter: ExecutorExporter | None = None
        if args.metric == "builtin":
            exporter = ExecutorExporter(workdir / "executors.json", buckets=False).start()
            stack.callback(exporter.stop)
            prometheus = PrometheusServer(workdir / "prometheus", [exporter.scrape_job()],
                                          scrape_interval=f"{args.settings.scrape_interval_s:g}s")
            prometheus_url = prometheus.start().url
            stack.callback(prometheus.stop)
        elif args.prometheus_url is not None:
            prometheus_url = args.prometheus_url
        else:
            services = local_services.Services.load()
            if not local_services.healthy(services) or services is None:
                raise SystemExit("the local cluster's Prometheus is not running: `make cluster-up` first")
            prometheus_url = services.prometheus_url
        if args.soak_settings is not None:
            soaked = run_soak(kube, prometheus_url, args.sizes[0], args.settings, args.soak_settings, workdir,
                              exporter)
            print(render_soak(soaked))
            if args.json:
                print(json.dumps(soaked.summary()))
            return 0
        results = [run_size(kube, prometheus_url, size, args.settings, workdir, exporter) for size in args.sizes]
    print(render(results, args.interval))
    if args.json:
        for r in results:
            print(json.dumps(r.summary() | {"metric": r.metric}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
