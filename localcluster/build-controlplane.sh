#!/usr/bin/env bash
# Builds kube-apiserver, etcd and a matching kubectl from the Go module proxy at the versions pinned in
# controlplane/go.mod, cached in .cache/bin/ by version and module hash (a second run only prints the
# paths). Prints "name=path" lines on stdout; progress goes to stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/gobuild.sh"
mod="$here/controlplane"

k8s_version=$(pinned "$mod" k8s.io/kubernetes)
etcd_version=$(pinned "$mod" go.etcd.io/etcd/server/v3)
[ -n "$k8s_version" ] && [ -n "$etcd_version" ] || { echo "cannot read pinned versions from $mod/go.mod" >&2; exit 1; }
key=$(module_key "$mod")
minor=${k8s_version#v1.}; minor=${minor%%.*}
k8s_ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$k8s_version
  -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor
  -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=$k8s_version"

gobuild kube-apiserver "$k8s_version" "$mod" "$key" k8s.io/kubernetes/cmd/kube-apiserver -ldflags "$k8s_ldflags"
gobuild etcd "$etcd_version" "$mod" "$key" ./cmd/etcd -ldflags "-s -w"
gobuild kubectl "$k8s_version" "$mod" "$key" k8s.io/kubernetes/cmd/kubectl -ldflags "$k8s_ldflags"
