#!/usr/bin/env bash
# Builds the Helm CLI from the Go module proxy at the version pinned in helm/go.mod, cached in
# .cache/bin/ by version and module hash (a second run only prints the path). Prints "helm=path".
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/gobuild.sh"
mod="$here/helm"

helm_version=$(pinned "$mod" helm.sh/helm/v3)
[ -n "$helm_version" ] || { echo "cannot read the pinned helm version from $mod/go.mod" >&2; exit 1; }
key=$(module_key "$mod")
out="$gobuild_bin/helm-$helm_version-$key"
ldflags=""
if [ ! -x "$out" ]; then
  # The version constants Helm's own Makefile sets: without them `helm version` prints v3.x-unreleased
  # and `helm lint`/`template` assume an older Kubernetes than the client-go helm is built against.
  k8s_minor=$(cd "$mod" && go list -m -f '{{.Version}}' k8s.io/client-go | cut -d. -f2)
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version
    -X helm.sh/helm/v3/internal/version.metadata= -X helm.sh/helm/v3/internal/version.gitTreeState=clean
    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$k8s_minor
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$k8s_minor"
fi
CGO_ENABLED=0 gobuild helm "$helm_version" "$mod" "$key" helm.sh/helm/v3/cmd/helm -trimpath -ldflags "$ldflags"
