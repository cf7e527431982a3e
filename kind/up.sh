#!/usr/bin/env bash
# Creates a kind cluster with Istio, Seldon Core v1, Prometheus (kube-prometheus-stack), this repository's
# operator and model-server images, the model store and the "digits" SeldonDeployment, and installs the
# modelrollout chart. Idempotent: an existing cluster is reused and every release is upgraded in place.
#   bash kind/up.sh            then: bash kind/run-scenarios.sh ; bash kind/down.sh
# Needs Docker, Go (to build kind, helm and kubectl at pinned versions) and network access to the chart repos.
set -euo pipefail
# shellcheck source=kind/lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
ensure_tools
H=("$HELM" --kubeconfig "$KUBECONFIG")
K=("$KUBECTL" --kubeconfig "$KUBECONFIG")

if cluster_exists; then
  log "reusing kind cluster $CLUSTER_NAME"
else
  log "creating kind cluster $CLUSTER_NAME ($KIND_NODE_IMAGE)"
  "$KIND" create cluster --name "$CLUSTER_NAME" --image "$KIND_NODE_IMAGE" --config "$here/kind-config.yaml" \
    --wait 120s
fi
"$KIND" get kubeconfig --name "$CLUSTER_NAME" > "$KUBECONFIG"

log "images: building and loading $OPERATOR_IMAGE and $MODEL_SERVER_IMAGE"
docker build -t "$OPERATOR_IMAGE" "$repo"
docker build -t "$MODEL_SERVER_IMAGE" "$repo/model_server"
"$KIND" load docker-image --name "$CLUSTER_NAME" "$OPERATOR_IMAGE" "$MODEL_SERVER_IMAGE"

log "chart repositories"
"${H[@]}" repo add istio "$ISTIO_REPO" --force-update >/dev/null
"${H[@]}" repo add seldon "$SELDON_REPO" --force-update >/dev/null
"${H[@]}" repo add prometheus-community "$PROMETHEUS_COMMUNITY_REPO" --force-update >/dev/null
"${H[@]}" repo update istio seldon prometheus-community >/dev/null

log "Istio $ISTIO_CHART_VERSION"
"${H[@]}" upgrade --install istio-base istio/base --version "$ISTIO_CHART_VERSION" \
  -n istio-system --create-namespace --wait
"${H[@]}" upgrade --install istiod istio/istiod --version "$ISTIO_CHART_VERSION" -n istio-system --wait
"${H[@]}" upgrade --install istio-ingressgateway istio/gateway --version "$ISTIO_CHART_VERSION" \
  -n istio-system -f "$here/manifests/istio-gateway-values.yaml" --wait
"${K[@]}" apply -f "$here/manifests/seldon-gateway.yaml"

log "kube-prometheus-stack $KUBE_PROMETHEUS_STACK_CHART_VERSION"
"${H[@]}" upgrade --install kube-prometheus-stack prometheus-community/kube-prometheus-stack \
  --version "$KUBE_PROMETHEUS_STACK_CHART_VERSION" -n monitoring --create-namespace \
  -f "$here/manifests/kube-prometheus-stack-values.yaml" --wait --timeout 10m
"${K[@]}" apply -f "$here/manifests/seldon-podmonitor.yaml"

log "Seldon Core v1 $SELDON_CHART_VERSION (Istio ingress)"
"${H[@]}" upgrade --install seldon-core seldon/seldon-core-operator --version "$SELDON_CHART_VERSION" \
  -n seldon-system --create-namespace --set istio.enabled=true --set istio.gateway=istio-system/seldon-gateway \
  --set usageMetrics.enabled=false --wait
"${K[@]}" wait --for=condition=Established --timeout=60s crd/seldondeployments.machinelearning.seldon.io

log "model store and the digits SeldonDeployment"
"${K[@]}" apply -f "$here/manifests/models.yaml"
"${K[@]}" -n models rollout status deployment/model-store --timeout=180s
"${K[@]}" -n models wait --for=jsonpath='{.status.state}'=Available sdep/digits --timeout=600s

log "modelrollout chart (operator image $OPERATOR_IMAGE)"
"${H[@]}" upgrade --install modelrollout "$repo/charts/modelrollout" -n modelrollout-system --create-namespace \
  --set image.repository="${OPERATOR_IMAGE%%:*}" --set image.tag="${OPERATOR_IMAGE##*:}" \
  --set image.pullPolicy=Never \
  --set prometheusUrl=http://prometheus-operated.monitoring.svc:9090 \
  --set serviceMonitor.enabled=true --set serviceMonitor.labels.release=kube-prometheus-stack \
  --wait --timeout 5m
"${K[@]}" -n modelrollout-system rollout status deployment/modelrollout --timeout=180s

log "ready: export KUBECONFIG=$KUBECONFIG; ingress http://127.0.0.1:8080/seldon/models/digits/api/v1.0/predictions"
