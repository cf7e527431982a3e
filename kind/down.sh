#!/usr/bin/env bash
# Deletes the kind cluster created by up.sh (and nothing else).
set -euo pipefail
# shellcheck source=kind/lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
ensure_kind
if cluster_exists; then
  "$KIND" delete cluster --name "$CLUSTER_NAME"
else
  log "no kind cluster named $CLUSTER_NAME"
fi
rm -f "$KUBECONFIG"
