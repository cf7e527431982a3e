#!/usr/bin/env bash
# Runs the scenarios against the kind cluster made by up.sh:
#   1. smoke: a ModelRollout of digits 2.0.0 under Locust traffic through the Istio ingress, with the operator
#      pod deleted mid-rollout; it must still reach Succeeded and leave the stable predictor on 2.0.0 at 100%;
#   2. the end-to-end suite (tests/e2e) pointed at this cluster;
#   3. the chaos scenarios (chaos/run.sh) pointed at this cluster, when present.
#   bash kind/run-scenarios.sh                  all three
#   SCENARIOS="smoke e2e" bash kind/run-scenarios.sh
set -euo pipefail
# shellcheck source=kind/lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
ensure_tools
cluster_exists || die "no kind cluster $CLUSTER_NAME: run bash kind/up.sh first"
K=("$KUBECTL" --kubeconfig "$KUBECONFIG")
scenarios=${SCENARIOS:-smoke}  # e2e and chaos against kind need the suite to read MODELROLLOUT_E2E_* first
ingress=http://127.0.0.1:8080
prometheus_port=${PROMETHEUS_LOCAL_PORT:-19090}
venv="$repo/.venv"
[ -x "$venv/bin/python" ] || die "the operator venv is missing: make venv"

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

# Prometheus on loopback for the suites' own queries (the operator queries it in-cluster).
"${K[@]}" -n monitoring port-forward svc/prometheus-operated "$prometheus_port:9090" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 60); do curl -fsS "http://127.0.0.1:$prometheus_port/-/ready" >/dev/null 2>&1 && break; sleep 1; done
curl -fsS "http://127.0.0.1:$prometheus_port/-/ready" >/dev/null || die "Prometheus port-forward did not come up"
curl -fsS -o /dev/null -X POST -H 'Content-Type: application/json' \
  -d '{"data": {"ndarray": [[0,0,5,13,9,1,0,0,0,0,13,15,10,15,5,0,0,3,15,2,0,11,8,0,0,4,12,0,0,8,8,0,0,5,8,0,0,9,8,0,0,4,11,0,1,12,7,0,0,2,14,5,10,12,0,0,0,0,6,13,10,0,0,0]]}}' \
  "$ingress/seldon/models/digits/api/v1.0/predictions" || die "the digits deployment does not answer through $ingress"

smoke() {
  local name
  name="digits-smoke-$(date +%s)"
  log "smoke: Locust through the ingress while $name rolls out 2.0.0"
  "${K[@]}" -n models apply -f - <<YAML
apiVersion: modelrollout.dev/v1alpha1
kind: ModelRollout
metadata: {name: $name, namespace: models}
spec:
  targetRef: {kind: SeldonDeployment, name: digits}
  stablePredictor: main
  candidate: {modelUri: "models://digits/2.0.0", version: "2.0.0"}
  strategy:
    canary:
      steps: [{setWeight: 20}, {pause: {duration: 60s}}, {setWeight: 50}, {analysis: {}}, {setWeight: 100}]
  analysis:
    interval: 15s
    failureLimit: 2
    inconclusiveLimit: 6
    minRequests: 20
    metrics:
      - {name: success-rate, template: request-success-rate, min: 0.99}
      - {name: latency-p99, template: request-duration-p99, max: 0.5}
YAML
  SELDON_NAMESPACE=models SELDON_DEPLOYMENT=digits "$venv/bin/locust" -f "$repo/loadtests/ingress_locustfile.py" \
    --headless -u 10 -r 10 -t 15m --host "$ingress" --only-summary >"$repo/.cache/kind/locust-smoke.log" 2>&1 &
  local locust=$!
  pids+=("$locust")
  "${K[@]}" -n models wait --for=jsonpath='{.status.candidateWeight}'=20 "mro/$name" --timeout=10m
  # Chaos inside the smoke run: the operator dies mid-rollout; the new pod must continue from the status.
  "${K[@]}" -n modelrollout-system delete pod -l app.kubernetes.io/name=modelrollout --wait=false
  "${K[@]}" -n models wait --for=jsonpath='{.status.phase}'=Succeeded "mro/$name" --timeout=15m || {
    "${K[@]}" -n models get "mro/$name" -o yaml >&2; die "smoke: $name did not succeed"; }
  kill "$locust" 2>/dev/null || true
  local uri traffic
  uri=$("${K[@]}" -n models get sdep digits -o jsonpath='{.spec.predictors[0].graph.modelUri}')
  traffic=$("${K[@]}" -n models get sdep digits -o jsonpath='{range .spec.predictors[*]}{.name}={.traffic} {end}')
  [ "$uri" = "models://digits/2.0.0" ] || die "smoke: stable serves $uri, not 2.0.0"
  [ "$traffic" = "main=100 " ] || die "smoke: traffic is '$traffic', not main=100"
  # Put 1.0.0 back for the next scenarios (the operator owns traffic only while a rollout runs).
  "${K[@]}" -n models delete "mro/$name"
  "${K[@]}" apply -f "$here/manifests/models.yaml" >/dev/null
  log "smoke: passed ($(tail -n 3 "$repo/.cache/kind/locust-smoke.log" | tr '\n' ' '))"
}

e2e() {
  log "e2e: tests/e2e against kind"
  # The suite reads its target from these variables; without them it runs on the local cluster.
  MODELROLLOUT_E2E_TARGET=kind MODELROLLOUT_E2E_KUBECONFIG="$KUBECONFIG" \
  MODELROLLOUT_E2E_INGRESS_URL="$ingress" MODELROLLOUT_E2E_PROMETHEUS_URL="http://127.0.0.1:$prometheus_port" \
  MODELROLLOUT_E2E_NAMESPACE=models MODELROLLOUT_E2E_MODEL_URI_PREFIX="models://digits/" \
    "$venv/bin/python" -m pytest -q -p no:cacheprovider "$repo/tests/e2e"
}

chaos() {
  if [ ! -f "$repo/chaos/run.sh" ]; then
    log "chaos: chaos/run.sh not present; skipped (the smoke scenario still killed the operator mid-rollout)"
    return 0
  fi
  log "chaos: chaos/run.sh against kind"
  CHAOS_TARGET=kind KUBECONFIG="$KUBECONFIG" INGRESS_URL="$ingress" \
    PROMETHEUS_URL="http://127.0.0.1:$prometheus_port" bash "$repo/chaos/run.sh"
}

for scenario in $scenarios; do
  case $scenario in
    smoke|e2e|chaos) "$scenario" ;;
    *) die "unknown scenario $scenario (smoke, e2e, chaos)" ;;
  esac
done
log "all scenarios passed: $scenarios"
