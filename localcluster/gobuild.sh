# Shared by build-controlplane.sh and build-helm.sh (sourced, not run): build a Go command from a small
# module in this folder into .cache/bin/<name>-<version>-<key>, where key hashes the module's files, and
# point .cache/bin/current/<name> at it. A cached binary is reused as it is.
set -euo pipefail
gobuild_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
gobuild_bin="$gobuild_repo/.cache/bin"
mkdir -p "$gobuild_bin/current"
command -v go >/dev/null || { echo "go is not installed; it is needed to build the local cluster's tools" >&2; exit 1; }

# pinned MODULE_DIR MODULE: the version go.mod requires, in either "require m v" or a require block.
pinned() {
  awk -v m="$2" '$1 == "require" { $1 = ""; $0 = $0 } $1 == m && $2 ~ /^v[0-9]/ {print $2; exit}' "$1/go.mod"
}

# module_key MODULE_DIR: a short hash of the module's files, so a changed pin builds anew.
module_key() { cat "$1/go.mod" "$1/go.sum" $(find "$1" -name '*.go' | sort) | sha256sum | cut -c1-10; }

# gobuild NAME VERSION MODULE_DIR KEY PACKAGE [go build flags...]: prints NAME=PATH.
gobuild() {
  local name=$1 version=$2 mod=$3 key=$4 pkg=$5; shift 5
  local out="$gobuild_bin/$name-$version-$key"
  if [ ! -x "$out" ]; then
    echo "building $name $version ($pkg); a cold build takes minutes" >&2
    local started=$SECONDS
    (cd "$mod" && go build -o "$out.tmp" "$@" "$pkg") >&2
    mv "$out.tmp" "$out"
    echo "built $name in $((SECONDS - started))s" >&2
  fi
  ln -sfn "$out" "$gobuild_bin/current/$name"
  echo "$name=$out"
}
