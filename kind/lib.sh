# shellcheck shell=bash
# Shared by the kind scripts: pinned versions, paths, tool checks. Sourced, not run.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=kind/versions.env
source "$here/versions.env"
bin="$repo/.cache/bin"
export KUBECONFIG="$repo/.cache/kind/kubeconfig"
mkdir -p "$bin" "$(dirname "$KUBECONFIG")"

log() { echo "[kind] $*" >&2; }
die() { echo "[kind] error: $*" >&2; exit 1; }

# kind from the Go module proxy at the pinned version, cached like the other tools.
ensure_kind() {
  local out="$bin/kind-$KIND_VERSION"
  if [ ! -x "$out" ]; then
    command -v go >/dev/null || die "go is needed to build kind"
    log "building kind $KIND_VERSION"
    GOBIN="$bin/.kind-build" go install "sigs.k8s.io/kind@$KIND_VERSION"
    mv "$bin/.kind-build/kind" "$out"
    rmdir "$bin/.kind-build"
  fi
  KIND="$out"
}

# helm and kubectl: the pinned builds of this repository (localcluster/).
ensure_tools() {
  command -v docker >/dev/null || die "docker (or a Docker-compatible engine) is needed by kind"
  docker info >/dev/null 2>&1 || die "the Docker engine is not reachable"
  ensure_kind
  HELM=$(bash "$repo/localcluster/build-helm.sh" | sed -n 's/^helm=//p')
  KUBECTL=$(bash "$repo/localcluster/build-controlplane.sh" | sed -n 's/^kubectl=//p')
  if [ ! -x "$HELM" ] || [ ! -x "$KUBECTL" ]; then die "could not build helm or kubectl"; fi
}

cluster_exists() { "$KIND" get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; }
