#!/usr/bin/env bash
# Builds the Helm CLI from the Go module proxy at the version pinned in helm/go.mod, caching it in
# .cache/bin/ under a name keyed by that version and the module files' hash, so a second run only prints
# the path. Prints "helm=path" on stdout and points .cache/bin/current/helm at it; progress goes to stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
mod="$here/helm"
bin="$repo/.cache/bin"
mkdir -p "$bin/current"

command -v go >/dev/null || { echo "go is not installed; it is needed to build helm" >&2; exit 1; }

# Reads both go.mod forms: "require helm.sh/helm/v3 vX" and a line inside a "require (...)" block.
helm_version=$(awk '$1 == "require" { $1 = "" ; $0 = $0 } $1 == "helm.sh/helm/v3" && $2 ~ /^v[0-9]/ {print $2; exit}' \
  "$mod/go.mod")
[ -n "$helm_version" ] || { echo "cannot read the pinned helm version from $mod/go.mod" >&2; exit 1; }
key=$(cat "$mod/go.mod" "$mod/go.sum" "$mod/tools.go" | sha256sum | cut -c1-10)
out="$bin/helm-$helm_version-$key"

if [ ! -x "$out" ]; then
  echo "building helm $helm_version; a cold build takes a few minutes" >&2
  started=$SECONDS
  # The version constants Helm's own Makefile sets: without them `helm version` prints v3.x-unreleased
  # and `helm lint`/`template` assume an older Kubernetes than the client-go helm is built against.
  client_go=$(cd "$mod" && go list -m -f '{{.Version}}' k8s.io/client-go)
  k8s_minor=$(echo "$client_go" | cut -d. -f2)
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version
    -X helm.sh/helm/v3/internal/version.metadata= -X helm.sh/helm/v3/internal/version.gitTreeState=clean
    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$k8s_minor
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$k8s_minor"
  (cd "$mod" && CGO_ENABLED=0 go build -trimpath -o "$out.tmp" -ldflags "$ldflags" helm.sh/helm/v3/cmd/helm) >&2
  mv "$out.tmp" "$out"
  echo "built helm in $((SECONDS - started))s" >&2
fi
ln -sfn "$out" "$bin/current/helm"
echo "helm=$out"
