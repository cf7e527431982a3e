"""Decision accuracy: does the operator promote what it should and roll back what it should, under Locust?

    .venv/bin/python -m loadtests.decisions [--judges threshold,compare] [--scenarios all] [--repeat-noisy 20]
        [--users 12] [--interval 3] [--window 25] [--warmup 6] [--steps 20,50] [--deadline 180] [--report PATH]

Each scenario runs end to end in a namespace of its own on the local cluster (``testkit.scenario.Scenario``):
SeldonDeployment digits at the stable version, fault knobs on the stable's model servers, Locust through the
ingress with ground-truth feedback on half the answers (batches of 16 digits images), the operator as a process,
then one ModelRollout with the candidate's fault knobs injected as soon as its servers are ready. Every
scenario has an expected decision (promoted or rolled back); "held" is neither by the deadline.

Judge sets (``--judges``):

- threshold: fixed bounds on the point, as the README's examples, set as one would from production's figures
  just before the rollout: success rate min 0.99, median latency max the stable's over the 15 s before the
  rollout plus the latency tolerance (or ``--latency-slo-ms``), accuracy min the stable model's accuracy on
  Locust's images minus 0.02, worst class recall min 0.5.
- compare: against the stable model over the same window: success rate (tolerance 0.015 at 80%), median
  latency (``--latency-tolerance`` 0.10: the candidate may be 10% slower, so +20% is beyond it; the median,
  not a tail quantile: on a shared machine the tails are the queueing of everything else running),
  accuracy (tolerance 0.02), prediction drift (PSI at most 0.03), and worst class recall min 0.5 (a
  threshold: it has no comparison).

Steps: ``--steps`` (default 20% then 50%, each earned by every metric passing over a full window; promotion
then gives the candidate's model all traffic, the 100%). 10% is too small a share here for a comparison to
prove anything: at the ~50 requests/s this machine serves, a 25 s window holds ~125 candidate requests at
10%, and "not worse than the stable by more than 1.5 points" needs a few hundred, so every check would be
inconclusive and the candidate rolled back for want of evidence.

Warm-up (``--warmup`` 6 s, ``analysis.warmup``): no check reads the candidate's first seconds of serving, the
way one declares a model server that is slow while it loads (the slow-start scenario is +300 ms for 5 s).
Comparisons are also looked at every interval before a full window exists at a weight (interim looks); a
failure there, or anywhere, that holds at 99.9% confidence rolls back at once, so gross faults are decided in
a few intervals rather than a window and a failure streak.

Printed: per judge set a confusion matrix (expected promoted / rolled back against promoted / rolled back /
held); per run the decision, the time to decision (from the candidate's first answer to a user, from
Locust's records, to the terminal phase) in seconds and in analysis intervals, and the blast radius: the
candidate's bad answers before the decision (the rows of its failed requests, from its executor's 5xx in
Prometheus, plus the rows it answered wrong, from Locust's per-request records: the version that answered
and the true labels) as a share of all rows users asked for from the rollout's start to the decision, and
the excess over what the stable model gets wrong at its own rate; then the false-rollback rate of the noisy
healthy candidate over ``--repeat-noisy`` runs per judge set (the matrix's own run counts as the first).
Figures only: the exit code is 1 only when a run could not be carried out. Needs ``make cluster-up``; one
run takes 60 to 120 s, the whole default suite (2 x 14 scenarios, 2 x 20 noisy runs) about 1 h 30.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import csv
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from testkit import faults  # noqa: E402
from testkit.prometheus import prom_value  # noqa: E402
from testkit.recorder import RolloutRecorder  # noqa: E402
from testkit.rollouts import model_rollout  # noqa: E402
from testkit.scenario import Scenario  # noqa: E402
from testkit.seldon import CANDIDATE, MODELS, digits_sdep  # noqa: E402
from testkit.waiting import wait_for  # noqa: E402

PROMOTED, ROLLED_BACK, HELD = "promoted", "rolled back", "held"
DECISIONS = (PROMOTED, ROLLED_BACK, HELD)
JUDGE_SETS = ("threshold", "compare")
BATCH = 16  # rows per prediction request: more answers and feedback per request for the quality judges
FEEDBACK_SHARE = "0.5"  # answers whose true labels come back
# Equal-quality retrains: another version and modelUri with the same recipe and another seed (another
# stratified split), built with the project's own training code (model_server/modelserver/train.py).
RETRAINS: dict[str, tuple[str, int]] = {"2.0.1": ("2.0.0", 45), "1.0.1": ("1.0.0", 46)}
MAX_RUNS = 400
# seldon-core's model server answers one request at a time per worker unless told otherwise: with tens of
# milliseconds of (injected) latency that caps a server at a few dozen requests/s and queues the rest. The
# latency is a wait, not work, so threads serve it as a real server waiting on I/O would.
SERVER_THREADS = "8"


def sdep(version: str) -> dict[str, Any]:
    """The digits SeldonDeployment at a stable version, its model server with SERVER_THREADS threads (the
    candidate predictor is a copy of it, so it has them too)."""
    obj = digits_sdep(version)
    obj["spec"]["predictors"][0]["componentSpecs"] = [{"spec": {"containers": [
        {"name": "classifier", "env": [{"name": "GUNICORN_THREADS", "value": SERVER_THREADS}]}]}}]
    return obj

_TRAIN = """
import json, sys
from pathlib import Path
import joblib
from sklearn.datasets import load_digits
from modelserver import train
out, retrains, measure = Path(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
for version, (recipe, seed) in retrains.items():
    base = train.VARIANTS[recipe]
    train.VARIANTS[version] = train.Variant(
        version, f"{recipe}'s recipe retrained with seed {seed} (another split): equal quality, another artifact.",
        base.build, base.corrupt_labels)
    train.train(out, [version], seed)
X, y = load_digits(return_X_y=True)
print(json.dumps({v: float((joblib.load(out / "digits" / v / "model.joblib").predict(X) == y).mean())
                  for v in measure}))
"""


def prepare_models(versions: Sequence[str]) -> dict[str, float]:
    """Train the equal-quality retrains (once; unchanged artifacts are left alone) and measure every version's
    accuracy on what Locust sends (all of load_digits' images): {version: accuracy}."""
    python = REPO / ".venv-model-server" / "bin" / "python"
    result = subprocess.run([str(python), "-c", _TRAIN, str(MODELS.parent), json.dumps(RETRAINS),
                             json.dumps(sorted(set(versions)))], cwd=REPO / "model_server", capture_output=True,
                            text=True, timeout=300, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"training the retrains failed:\n{result.stderr[-2000:]}")
    return {str(k): float(v) for k, v in json.loads(result.stdout.strip().splitlines()[-1]).items()}


# ------------------------------------------------------------------------------------------ settings


@dataclass(frozen=True)
class Settings:
    interval_s: float = 3.0
    window_s: int = 25
    steps: tuple[int, ...] = (20, 50)
    failure_limit: int = 3
    inconclusive_limit: int = 6
    min_requests: int = 50
    users: int = 12
    deadline_s: float = 180.0
    base_latency_ms: float = 40.0  # injected on stable and candidate alike, so that +20% is measurable
    base_jitter_ms: float = 6.0
    latency_tolerance: float = 0.10  # compare: the candidate may be 10% slower than the stable
    latency_slo_ms: float = 0.0  # threshold: a fixed p50 max; 0: the stable's p50 before the rollout + tolerance
    success_tolerance: float = 0.015
    success_confidence: float = 0.8
    accuracy_tolerance: float = 0.02
    max_psi: float = 0.03
    slow_start_s: float = 5.0
    warmup_s: float = 6.0  # analysis.warmup: model servers may be slow in their first seconds (slow-start)

    def steps_spec(self) -> list[dict[str, Any]]:
        steps: list[dict[str, Any]] = []
        for weight in self.steps:
            steps += [{"setWeight": weight}, {"pause": {"duration": f"{self.window_s}s"}}]
        return steps


def metrics(judges: str, s: Settings, stable_accuracy: float, stable_p50_s: float) -> list[dict[str, Any]]:
    window = f"{s.window_s}s"
    recall = {"name": "worst-class", "template": "class-recall", "min": 0.5, "window": window}
    if judges == "threshold":
        return [{"name": "success-rate", "template": "request-success-rate", "min": 0.99, "window": window},
                {"name": "latency-p50", "template": "request-duration-p50", "window": window,
                 "max": round(s.latency_slo_ms / 1000 if s.latency_slo_ms else
                              stable_p50_s * (1 + s.latency_tolerance), 4)},
                {"name": "accuracy", "template": "model-accuracy",
                 "min": round(stable_accuracy - s.accuracy_tolerance, 3), "window": window},
                recall]
    return [{"name": "success-rate", "template": "request-success-rate", "window": window,
             "compare": {"tolerance": s.success_tolerance, "confidence": s.success_confidence,
                         "minSamples": 100}},
            {"name": "latency", "template": "request-duration-p50", "window": window,
             "compare": {"tolerance": s.latency_tolerance, "minSamples": 100}},
            {"name": "accuracy", "template": "model-accuracy", "window": window,
             "compare": {"tolerance": s.accuracy_tolerance, "minSamples": 200}},
            {"name": "drift", "template": "prediction-distribution", "window": window,
             "compare": {"maxPSI": s.max_psi, "minSamples": 200}},
            recall]


# ------------------------------------------------------------------------------------------ scenarios


@dataclass(frozen=True)
class Case:
    key: str
    title: str
    expected: str
    stable: str = "2.0.0"
    candidate: str = "2.0.1"
    stable_faults: dict[str, Any] = field(default_factory=dict)
    candidate_faults: dict[str, Any] = field(default_factory=dict)
    script: str = ""  # "", "no-traffic", "slow-start", "errors-at-50"
    later_faults: dict[str, Any] = field(default_factory=dict)  # what the script sets later


def cases(s: Settings) -> list[Case]:
    base = {"latency_ms": s.base_latency_ms, "latency_jitter_ms": s.base_jitter_ms}
    noisy = {"latency_ms": s.base_latency_ms, "latency_jitter_ms": 2 * s.base_jitter_ms, "error_rate": 0.003}

    def slower(factor: float) -> dict[str, Any]:
        return {"latency_ms": s.base_latency_ms * factor, "latency_jitter_ms": s.base_jitter_ms * factor}

    def bad(title: str, key: str, **knobs: Any) -> Case:
        return Case(key, title, ROLLED_BACK, stable_faults=base, candidate_faults={**base, **knobs})

    return [
        Case("noisy-healthy", "same model, noisy but healthy (jitter, 0.3% errors on both)", PROMOTED,
             stable_faults=noisy, candidate_faults=noisy),
        Case("better-model", "better model (1.0.0 -> 2.0.0)", PROMOTED, stable="1.0.0", candidate="2.0.0",
             stable_faults=base, candidate_faults=base),
        bad("2% errors", "errors-2", error_rate=0.02),
        bad("5% errors", "errors-5", error_rate=0.05),
        Case("latency-20", f"+20% latency (tolerated: +{s.latency_tolerance:.0%})", ROLLED_BACK,
             stable_faults=base, candidate_faults=slower(1.2)),
        Case("latency-100", "+100% latency", ROLLED_BACK, stable_faults=base, candidate_faults=slower(2.0)),
        bad("3% accuracy loss", "accuracy-3", wrong_class_share=0.03),
        bad("5% accuracy loss", "accuracy-5", wrong_class_share=0.05),
        bad("15% accuracy loss", "accuracy-15", wrong_class_share=0.15),
        bad("one class broken (3 never answered)", "dead-class", dead_class=3),
        # keep_accuracy moves only answers that are wrong and stay wrong: the 2.0.x models answer 98.5% right,
        # too few wrong answers to move; 1.0.x's 9.5% moved to class 0 double its share (PSI ~0.075).
        Case("drift", "output drift at unchanged accuracy (1.0.0 -> 1.0.1, wrong answers moved to class 0)",
             ROLLED_BACK, stable="1.0.0", candidate="1.0.1", stable_faults=base,
             candidate_faults={**base, "output_shift_class": 0, "output_shift_share": 1.0,
                               "output_shift_mode": "keep_accuracy"}),
        Case("no-traffic", "no traffic to the candidate (Locust stopped)", ROLLED_BACK, stable_faults=base,
             candidate_faults=base, script="no-traffic"),
        Case("slow-start", f"slow start: +300 ms for {s.slow_start_s:g}s after the candidate is ready, then normal",
             PROMOTED, stable_faults=base, candidate_faults={"latency_ms": 300.0, "latency_jitter_ms": 30.0},
             script="slow-start", later_faults=base),
        Case("errors-at-50", "5% errors from when the candidate reached 50%", ROLLED_BACK, stable_faults=base,
             candidate_faults=base, script="errors-at-50", later_faults={"error_rate": 0.05, "error_status": 503}),
    ]


# ------------------------------------------------------------------------------------------ one run


@dataclass
class Result:
    case: Case
    judges: str
    decision: str
    phase: str = ""
    time_s: float | None = None
    intervals: float | None = None
    rows: int = 0  # rows users asked for from the rollout's start to the decision
    candidate_rows: int = 0  # of them answered or failed by the candidate
    bad_rows: int = 0  # the candidate's failed (5xx) rows + its wrong answers
    excess_rows: float = 0.0  # bad_rows minus the stable's wrong-answer rate on the candidate's rows
    message: str = ""
    error: str = ""
    namespace: str = ""

    @property
    def correct(self) -> bool:
        return self.decision == self.case.expected

    @property
    def blast(self) -> float:
        return self.bad_rows / self.rows if self.rows else 0.0

    @property
    def excess(self) -> float:
        return self.excess_rows / self.rows if self.rows else 0.0


@dataclass
class Record:
    sent: float
    status: int
    ms: float
    version: str
    rows: int
    wrong: int


def read_records(path: Path) -> list[Record]:
    if not path.exists():
        return []
    records = []
    with open(path, newline="") as handle:
        for row in csv.reader(handle):
            try:
                records.append(Record(float(row[0]), int(row[1]), float(row[2]), row[3], int(row[4]), int(row[5])))
            except (IndexError, ValueError):
                continue  # a line cut short when Locust stopped
    return records


def candidate_failures(sc: Scenario, start: float, end: float) -> float:
    """The candidate predictor's failed predictions (executor 5xx) between two unix times, from Prometheus."""
    selector = (f'namespace="{sc.namespace}",predictor_name="{CANDIDATE}",service="predictions",'
                'code=~"5.."')
    window = f"{max(1, round(end - start))}s"
    query = f"sum(increase(seldon_api_executor_server_requests_seconds_count{{{selector}}}[{window}] @ {end:.3f}))"
    return prom_value(sc.prometheus_url, query) or 0.0


def scrape_past(sc: Scenario, moment: float, timeout: float = 15) -> None:
    """Until Prometheus scraped the namespace's executors after a unix time (so increase() covers it)."""
    scraped = f'max(timestamp(up{{job="seldon-executors",namespace="{sc.namespace}"}}))'
    with contextlib.suppress(AssertionError):  # the series may be gone with the candidate: take what there is
        wait_for(lambda: (prom_value(sc.prometheus_url, scraped) or 0.0) >= moment,
                 f"a scrape of {sc.namespace} after {moment:.0f}", timeout=timeout, interval=0.5)


def calibrate(sc: Scenario, seconds: int = 15) -> float:
    """The stable's median latency over the last `seconds` of Locust's traffic (waiting until it has run that long):
    the latency SLO a threshold is set from, as one would set it from production's recent figures."""
    selector = f'namespace="{sc.namespace}",predictor_name="main",service="predictions"'
    query = (f"histogram_quantile(0.5, sum by (le) (rate(seldon_api_executor_server_requests_seconds_bucket"
             f"{{{selector}}}[{seconds}s])))")
    count = (f"sum(increase(seldon_api_executor_server_requests_seconds_count{{{selector}}}[{seconds}s] "
             f"offset {seconds}s))")
    wait_for(lambda: (prom_value(sc.prometheus_url, count) or 0) > 0, "the stable's traffic to reach back "
             f"{seconds}s", timeout=seconds + 30, interval=1.0)
    return wait_for(lambda: prom_value(sc.prometheus_url, query), "the stable's median", timeout=10, interval=1.0)


def run_script(case: Case, sc: Scenario, mro: RolloutRecorder, armer: faults.FaultArmer, s: Settings,
               stop: threading.Event) -> None:
    """What happens later in a scenario, in a bounded background thread."""
    deadline = time.monotonic() + s.deadline_s

    def set_candidate(knobs: dict[str, Any]) -> None:
        for server in faults.servers(sc.ingress_url, sc.namespace, "digits", CANDIDATE):
            if server["ready"] and server["pid"]:
                faults.set_faults(server, **knobs)

    if case.script == "slow-start":
        while armer.injected_at is None and not stop.is_set() and time.monotonic() < deadline:
            stop.wait(0.1)
        if armer.injected_at is not None:
            stop.wait(max(0.0, armer.injected_at + s.slow_start_s - time.monotonic()))
            armer.stop()  # a restarted server must not start slow again
            set_candidate(case.later_faults)
    elif case.script == "errors-at-50":
        while not stop.is_set() and time.monotonic() < deadline:
            if mro.first(lambda x: x.weight >= 50) is not None:  # the recorder's samples: no extra reads
                set_candidate(case.later_faults)
                return
            stop.wait(0.2)


def run_case(case: Case, judges: str, s: Settings, accuracy: dict[str, float]) -> Result:
    title = f"{case.key} [{judges}]: {case.title}"
    namespace = ""
    try:
        with Scenario(title, prefix="decide") as sc:
            namespace = sc.namespace
            return _run(case, judges, s, accuracy, sc)
    except Exception as exc:  # a run that could not be carried out is reported, not a decision
        return Result(case, judges, HELD, error=f"{type(exc).__name__}: {str(exc)[:300]}", namespace=namespace)


def _run(case: Case, judges: str, s: Settings, accuracy: dict[str, float], sc: Scenario) -> Result:
    sc.deploy(sdep(case.stable))
    if case.stable_faults:
        sc.arm_faults(predictor="main", **case.stable_faults).wait_injected(timeout=30)
    records_path = sc.workdir / "requests.csv"
    locust = sc.start_locust(users=s.users, duration_s=int(s.deadline_s + 120), BATCH_SIZE=str(BATCH),
                             FEEDBACK_SHARE=FEEDBACK_SHARE, RECORD_FILE=str(records_path))
    sc.wait_traffic(predictions=100, timeout=60)
    sc.start_operator()
    stable_p50 = 0.0
    if judges == "threshold" and not s.latency_slo_ms:
        stable_p50 = calibrate(sc)
    armer = sc.arm_faults(**case.candidate_faults)
    rollout = model_rollout(case.candidate, s.steps_spec(), name=f"digits-{case.key}"[:50], analysis={
        "interval": f"{s.interval_s:g}s", "failureLimit": s.failure_limit, "warmup": f"{s.warmup_s:g}s",
        "inconclusiveLimit": s.inconclusive_limit, "minRequests": s.min_requests,
        "metrics": metrics(judges, s, accuracy[case.stable], stable_p50)})
    if case.script == "no-traffic":
        locust.stop()
    started = time.time()
    # Stage.start_rollout's recorder reads every 0.3 s with kubectl; once a second is plenty here and leaves
    # the shared CPUs to the data plane.
    sc.kube.create(rollout, sc.namespace)
    mro = RolloutRecorder(sc.kube, sc.namespace, rollout["metadata"]["name"], interval=1.0,
                          max_seconds=s.deadline_s + 60).start()
    sc.recorders.append(mro)
    stop = threading.Event()
    script = threading.Thread(target=run_script, args=(case, sc, mro, armer, s, stop), daemon=True)
    script.start()

    def stop_script() -> None:
        stop.set()
        script.join(timeout=5)

    sc.cleanups.append(stop_script)
    try:
        status = mro.wait_phase("Succeeded", "RolledBack", "Failed", "Aborted", timeout=s.deadline_s)
    except AssertionError:
        status = mro.status()
    operator = sc.operator
    if operator is not None and not operator.running():  # no decision was made: the run did not happen
        last = (operator.log().strip().splitlines() or ["(no log)"])[-1]
        raise RuntimeError(f"the operator exited during the run: {last[:200]}")
    # What the run saw, kept with its logs: every status change (verdicts and messages) and the last checks.
    (sc.workdir / "timeline.txt").write_text("".join(
        f"+{x.t - mro.samples[0].t:6.1f}s {x.phase:<11} weight {x.weight:>3} {x.verdicts}\n    {x.message}\n"
        for x in mro.samples))
    (sc.workdir / "status.json").write_text(json.dumps(status, indent=1, default=str) + "\n")
    phase = str(status.get("phase") or "")
    decision = {"Succeeded": PROMOTED, "RolledBack": ROLLED_BACK}.get(phase, HELD)
    terminal = mro.first(lambda x: x.phase in ("Succeeded", "RolledBack", "Failed", "Aborted"))
    decided = mro.first(lambda x: x.phase in ("Promoting", "Succeeded", "RolledBack", "Failed", "Aborted"))
    end = decided.wall if decided else time.time()
    scrape_past(sc, end + 1)
    time.sleep(1.0)  # Locust's records of the requests in flight at the decision
    records = [r for r in read_records(records_path) if started <= r.sent <= end]
    served = [r for r in read_records(records_path) if r.version == case.candidate and r.sent >= started]
    moved = mro.first(lambda x: x.weight > 0)
    first = served[0].sent if served else (moved.wall if moved else started)
    result = Result(case, judges, decision, phase, message=str(status.get("message") or ""), namespace=sc.namespace)
    if terminal is not None:
        result.time_s = max(0.0, terminal.wall - first)
        result.intervals = result.time_s / s.interval_s
    result.rows = sum(r.rows for r in records)
    failed_rows = round(candidate_failures(sc, started, end)) * BATCH
    answered = [r for r in records if r.version == case.candidate]
    stable = [r for r in records if r.version == case.stable]
    stable_wrong = sum(r.wrong for r in stable) / max(1, sum(r.rows for r in stable))
    result.candidate_rows = sum(r.rows for r in answered) + failed_rows
    result.bad_rows = failed_rows + sum(r.wrong for r in answered)
    result.excess_rows = max(0.0, result.bad_rows - stable_wrong * result.candidate_rows)
    print(f"  -> {decision} ({phase}), expected {case.expected}; {result.time_s or 0:.1f}s "
          f"({result.intervals or 0:.1f} intervals); blast {result.blast:.2%}, excess {result.excess:.2%}; "
          f"{result.message[:200]}", flush=True)
    return result


# ------------------------------------------------------------------------------------------ the suite


@dataclass
class Summary:
    settings: Settings
    judges: list[str]
    results: list[Result]  # one run per scenario and judge set
    noisy: dict[str, list[Result]]  # judge set -> the noisy-healthy repetitions (the matrix's run first)
    seconds: float


def run(s: Settings, judges: Sequence[str], keys: Sequence[str], repeat_noisy: int, parallel: int = 1,
        log: Callable[[str], None] = print) -> Summary:
    chosen = [c for c in cases(s) if c.key in keys]
    accuracy = prepare_models([v for c in cases(s) for v in (c.stable, c.candidate)])
    log("accuracy on Locust's images: " + ", ".join(f"{v} {a:.3f}" for v, a in sorted(accuracy.items())))
    plan: list[tuple[Case, str]] = [(c, j) for j in judges for c in chosen]
    noisy_case = next(c for c in cases(s) if c.key == "noisy-healthy")
    extra = max(0, repeat_noisy - (1 if noisy_case in chosen else 0))
    plan += [(noisy_case, j) for _ in range(extra) for j in judges]  # interleaved: a partial run stays balanced
    plan = plan[:MAX_RUNS]
    log(f"{len(plan)} runs, about {len(plan) * 75 / max(1, parallel) / 60:.0f} min")
    begun = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        done = list(pool.map(lambda item: run_case(item[0], item[1], s, accuracy), plan))
    results = done[:len(chosen) * len(judges)]
    noisy: dict[str, list[Result]] = {j: [] for j in judges}
    for r in done:
        if r.case.key == "noisy-healthy":
            noisy[r.judges].append(r)
    return Summary(s, list(judges), results, noisy if repeat_noisy else {}, time.monotonic() - begun)


def confusion(results: Sequence[Result]) -> dict[str, dict[str, int]]:
    matrix = {expected: dict.fromkeys(DECISIONS, 0) for expected in (PROMOTED, ROLLED_BACK)}
    for r in results:
        matrix[r.case.expected][r.decision] += 1
    return matrix


def render(summary: Summary) -> str:
    s = summary.settings
    slo = (f"{s.latency_slo_ms:g} ms" if s.latency_slo_ms else
           f"the stable's p50 over the 15 s before the rollout +{s.latency_tolerance:.0%}")
    out = [f"\nDecision accuracy: steps {' -> '.join(f'{w}%' for w in s.steps)} -> promotion (100%), interval "
           f"{s.interval_s:g}s, windows {s.window_s}s, warm-up {s.warmup_s:g}s, failureLimit {s.failure_limit}, "
           f"inconclusiveLimit "
           f"{s.inconclusive_limit}, Locust {s.users} users (batches of {BATCH}, feedback on "
           f"{float(FEEDBACK_SHARE):.0%} of them), base "
           f"latency {s.base_latency_ms:g}+-{s.base_jitter_ms:g} ms on both predictors; latency tolerance "
           f"{s.latency_tolerance:.0%} on the median (compare), p50 max {slo} (threshold); "
           f"{summary.seconds / 60:.1f} min\n"]
    corner = "expected \\ decided"
    for judges in summary.judges:
        results = [r for r in summary.results if r.judges == judges]
        if not results:
            continue
        matrix = confusion(results)
        right = sum(r.correct for r in results)
        out.append(f"Confusion matrix, {judges} judges ({right}/{len(results)} as expected)")
        out.append(f"  {corner:<22}" + "".join(f"{d:>13}" for d in DECISIONS))
        for expected, row in matrix.items():
            out.append(f"  {'expected ' + expected:<22}" + "".join(f"{row[d]:>13}" for d in DECISIONS))
        out.append("")
    out.append(f"{'scenario':<15} {'judges':<9} {'expected':<11} {'decision':<11} {'ok':<3} {'time s':>7} "
               f"{'intervals':>9} {'cand rows':>9} {'blast':>7} {'excess':>7}  why")
    for r in summary.results:
        took = f"{r.time_s:7.1f}" if r.time_s is not None else f"{'-':>7}"
        steps = f"{r.intervals:9.1f}" if r.intervals is not None else f"{'-':>9}"
        share = r.candidate_rows / r.rows if r.rows else 0.0
        why = r.error or r.message
        out.append(f"{r.case.key:<15} {r.judges:<9} {r.case.expected:<11} {r.decision:<11} "
                   f"{'yes' if r.correct else 'NO':<3} {took} {steps} {share:9.1%} {r.blast:7.2%} {r.excess:7.2%}"
                   f"  {why[:150]}")
    out.append("\nblast: the candidate's failed rows (5xx, Prometheus) and wrong answers (Locust's records) over all "
               "rows users asked for from the rollout's start to the decision; excess: minus what the stable gets "
               "wrong at its own rate; time: from the candidate's first answer to the terminal phase.")
    if summary.noisy:
        out.append("\nFalse rollbacks of the noisy healthy candidate (same model, jitter and 0.3% errors on both):")
        for judges, runs in summary.noisy.items():
            rolled = sum(r.decision == ROLLED_BACK for r in runs)
            held = sum(r.decision == HELD for r in runs)
            errors = sum(bool(r.error) for r in runs)
            rate = rolled / len(runs) if runs else 0.0
            out.append(f"  {judges:<9} {rolled}/{len(runs)} rolled back ({rate:.0%}), {held} held"
                       + (f" ({errors} could not run)" if errors else ""))
            for r in runs:
                if r.decision != PROMOTED:
                    out.append(f"    {r.decision}: {(r.error or r.message)[:160]}")
    return "\n".join(out)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    keys = [c.key for c in cases(Settings())]
    parser.add_argument("--judges", default="threshold,compare", help="judge sets, comma-separated: "
                        + ", ".join(JUDGE_SETS))
    parser.add_argument("--scenarios", default="all", help="scenario keys, comma-separated: " + ", ".join(keys))
    parser.add_argument("--repeat-noisy", type=int, default=20, help="runs of noisy-healthy per judge set (0: none)")
    parser.add_argument("--users", type=int, default=Settings.users)
    parser.add_argument("--interval", type=float, default=Settings.interval_s, help="analysis interval, seconds")
    parser.add_argument("--warmup", type=float, default=Settings.warmup_s,
                        help="analysis.warmup, seconds: the candidate's first seconds are never judged")
    parser.add_argument("--window", type=int, default=Settings.window_s, help="every metric's window, seconds")
    parser.add_argument("--steps", default=",".join(map(str, Settings.steps)), help="canary weights before promotion")
    parser.add_argument("--deadline", type=float, default=Settings.deadline_s, help="seconds until a run is held")
    parser.add_argument("--latency-tolerance", type=float, default=Settings.latency_tolerance)
    parser.add_argument("--latency-slo-ms", type=float, default=Settings.latency_slo_ms,
                        help="threshold judges: a fixed p50 max (default: the stable's p50 before the rollout "
                        "plus the latency tolerance)")
    parser.add_argument("--parallel", type=int, default=1, help="runs at a time (the machine is shared: 1)")
    parser.add_argument("--report", type=Path, help="also write the summary to this file")
    args = parser.parse_args(argv)
    args.judge_sets = [j for j in args.judges.split(",") if j]
    args.keys = keys if args.scenarios == "all" else [k for k in args.scenarios.split(",") if k]
    unknown = [j for j in args.judge_sets if j not in JUDGE_SETS] + [k for k in args.keys if k not in keys]
    if unknown or not args.judge_sets or not args.keys:
        parser.error(f"unknown or no judge sets / scenarios: {unknown}")
    steps = tuple(int(w) for w in args.steps.split(","))
    if not steps or any(not 0 < w < 100 for w in steps) or list(steps) != sorted(set(steps)):
        parser.error("--steps: rising weights between 1 and 99 (promotion gives the 100%)")
    if args.window < 4:
        parser.error("--window: at least 4 scrapes (4s)")
    args.settings = replace(Settings(), users=max(1, min(args.users, 64)), interval_s=max(1.0, min(args.interval, 30)),
                            window_s=args.window, steps=steps, deadline_s=max(30.0, min(args.deadline, 900)),
                            latency_tolerance=args.latency_tolerance, latency_slo_ms=args.latency_slo_ms,
                            warmup_s=max(0.0, min(args.warmup, 60.0)))
    args.repeat_noisy = max(0, min(args.repeat_noisy, 100))
    args.parallel = max(1, min(args.parallel, 4))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    summary = run(args.settings, args.judge_sets, args.keys, args.repeat_noisy, args.parallel)
    text = render(summary)
    print(text, flush=True)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(text + "\n")
    runs = summary.results + [r for runs in summary.noisy.values() for r in runs]
    return 1 if any(r.error for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
