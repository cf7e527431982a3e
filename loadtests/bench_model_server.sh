#!/usr/bin/env bash
# Load figure for one model server: start it on loopback, run Locust headless for a bounded time,
# print requests/s, p50, p99 and the server's memory, then stop the server.
#
#   bash loadtests/bench_model_server.sh                     # 20 users, spawn 10/s, 20 s, version 2.0.0
#   USERS=50 SPAWN_RATE=25 DURATION=30s MODEL_VERSION=1.0.0 bash loadtests/bench_model_server.sh
#   GUNICORN_WORKERS=2 GUNICORN_THREADS=4 bash loadtests/bench_model_server.sh   (seldon-core's own knobs)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
users="${USERS:-20}"
spawn_rate="${SPAWN_RATE:-10}"
duration="${DURATION:-20s}"
version="${MODEL_VERSION:-2.0.0}"
batch="${MODEL_LOAD_BATCH:-8}"
ms_python="$repo/.venv-model-server/bin/python"
locust_bin="${LOCUST:-$repo/.venv/bin/locust}"

bash "$repo/model_server/setup-env.sh" >/dev/null
if [[ ! -x "$locust_bin" ]]; then
    echo "locust not found at $locust_bin (make venv, or set LOCUST=/path/to/locust)" >&2
    exit 1
fi
"$ms_python" -m modelserver.train --out "$repo/models" --version "$version" >/dev/null

work="$(mktemp -d)"
server_pid=""
sampler_pid=""

stop_server() {
    [[ -n "$sampler_pid" ]] && kill "$sampler_pid" 2>/dev/null || true
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    fi
    # The server leads its own process group: end whatever of it is left, and nothing else.
    [[ -n "$server_pid" ]] && kill -KILL -- "-$server_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap stop_server EXIT

read -r http_port metrics_port admin_port < <("$ms_python" - <<'EOF'
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
EOF
)

# Held-out digits as the request rows, so the load is realistic input.
"$ms_python" - "$work/samples.json" <<'EOF'
import json, sys
from modelserver import train
json.dump(train.load_dataset(train.DEFAULT_SEED).X_test.tolist(), open(sys.argv[1], "w"))
EOF

(
    cd "$work"
    MODEL_URI="file://$repo/models/digits/$version" \
    PREDICTIVE_UNIT_HTTP_SERVICE_PORT="$http_port" \
    PREDICTIVE_UNIT_METRICS_SERVICE_PORT="$metrics_port" \
    MODEL_ADMIN_PORT="$admin_port" \
    GRPC_WORKERS=0 \
    INCLUDE_METRICS_IN_CLIENT_RESPONSE=false \
    exec setsid "$repo/.venv-model-server/bin/seldon-core-microservice" \
        modelserver.server.DigitsClassifier --service-type MODEL >"$work/server.log" 2>&1
) &
server_pid=$!

ready=""
for _ in $(seq 1 300); do  # at most 30 s
    if curl --noproxy "*" -fsS -o /dev/null "http://127.0.0.1:$http_port/health/status" 2>/dev/null; then ready=1; break; fi
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
done
if [[ -n "$ready" && "$(ps -o pgid= -p "$server_pid" | tr -d ' ')" != "$server_pid" ]]; then
    echo "model server is not its own process group leader; refusing to continue" >&2
    exit 1
fi
if [[ -z "$ready" ]]; then
    echo "model server did not become ready; its log:" >&2
    tail -30 "$work/server.log" >&2
    exit 1
fi

# Memory of the server's process group in kB: RSS summed, PSS summed (shared pages counted once).
group_memory() {
    local rss=0 pss=0 pid r p
    for pid in $(pgrep -g "$server_pid" 2>/dev/null); do
        r=$(awk '/^Rss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)
        p=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)
        rss=$((rss + ${r:-0})); pss=$((pss + ${p:-0}))
    done
    echo "$rss $pss"
}
# The gunicorn worker that serves predictions reports its pid in the health answer.
worker_pid=$(curl --noproxy "*" -fsS "http://127.0.0.1:$http_port/health/status" \
    | "$ms_python" -c 'import json, sys; print(json.load(sys.stdin)["jsonData"]["pid"])')
worker_rss() {
    awk '/^VmRSS:/ {print $2}' "/proc/$worker_pid/status" 2>/dev/null || echo 0
}

# Peak memory while under load, sampled twice a second for at most the run's length plus slack.
(
    peak_rss=0; peak_pss=0; peak_worker=0
    for _ in $(seq 1 600); do
        read -r rss pss < <(group_memory)
        worker=$(worker_rss)
        (( rss > peak_rss )) && peak_rss=$rss
        (( pss > peak_pss )) && peak_pss=$pss
        (( worker > peak_worker )) && peak_worker=$worker
        echo "$peak_rss $peak_pss $peak_worker" > "$work/memory"
        sleep 0.5
    done
) &
sampler_pid=$!

echo "load: $users users (spawn $spawn_rate/s) for $duration, batch $batch rows, model $version, 127.0.0.1:$http_port"
MODEL_LOAD_SAMPLES="$work/samples.json" MODEL_LOAD_BATCH="$batch" \
    timeout 300 "$locust_bin" -f "$repo/loadtests/model_server_locustfile.py" --headless \
    -u "$users" -r "$spawn_rate" -t "$duration" --stop-timeout 5 \
    --host "http://127.0.0.1:$http_port" --csv "$work/locust" --only-summary \
    >"$work/locust.log" 2>&1 || { echo "locust failed:" >&2; tail -30 "$work/locust.log" >&2; exit 1; }

read -r peak_rss peak_pss peak_worker < "$work/memory"
"$ms_python" - "$work/locust_stats.csv" "$peak_rss" "$peak_pss" "$peak_worker" <<'EOF'
import csv, sys
rows = {row["Name"]: row for row in csv.DictReader(open(sys.argv[1]))}
agg = rows["Aggregated"]
rss, pss, worker = (int(v) / 1024 for v in sys.argv[2:5])
print(
    f"requests={agg['Request Count']} failures={agg['Failure Count']} "
    f"rps={float(agg['Requests/s']):.1f} p50={agg['50%']}ms p99={agg['99%']}ms "
    f"server_rss_total={rss:.0f}MiB server_pss_total={pss:.0f}MiB worker_rss={worker:.0f}MiB"
)
EOF
