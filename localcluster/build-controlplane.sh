#!/usr/bin/env bash
# Builds kube-apiserver, etcd and a matching kubectl from the Go module proxy at the versions pinned in
# controlplane/go.mod, caching each binary in .cache/bin/ under a name keyed by its version and the
# module files' hash, so a second run only prints the paths. Prints "name=path" lines on stdout and
# points .cache/bin/current/<name> at them; progress goes to stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
mod="$here/controlplane"
bin="$repo/.cache/bin"
mkdir -p "$bin/current"

command -v go >/dev/null || { echo "go is not installed; it is needed to build the control plane" >&2; exit 1; }

pinned() { awk -v m="$1" '$1 == m && $2 ~ /^v[0-9]/ {print $2; exit}' "$mod/go.mod"; }
k8s_version=$(pinned k8s.io/kubernetes)
etcd_version=$(pinned go.etcd.io/etcd/server/v3)
[ -n "$k8s_version" ] && [ -n "$etcd_version" ] || { echo "cannot read pinned versions from $mod/go.mod" >&2; exit 1; }
key=$(cat "$mod/go.mod" "$mod/go.sum" "$mod/cmd/etcd/main.go" | sha256sum | cut -c1-10)
minor=${k8s_version#v1.}; minor=${minor%%.*}
k8s_ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$k8s_version
  -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor
  -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=$k8s_version"

build() {  # name, version, package, ldflags
  local name=$1 out="$bin/$1-$2-$key" pkg=$3 ldflags=$4
  if [ ! -x "$out" ]; then
    echo "building $name $2 ($pkg); a cold build takes several minutes" >&2
    local started=$SECONDS
    (cd "$mod" && go build -o "$out.tmp" -ldflags "$ldflags" "$pkg") >&2
    mv "$out.tmp" "$out"
    echo "built $name in $((SECONDS - started))s" >&2
  fi
  ln -sfn "$out" "$bin/current/$name"
  echo "$name=$out"
}

build kube-apiserver "$k8s_version" k8s.io/kubernetes/cmd/kube-apiserver "$k8s_ldflags"
build etcd "$etcd_version" ./cmd/etcd "-s -w"
build kubectl "$k8s_version" k8s.io/kubernetes/cmd/kubectl "$k8s_ldflags"
