#!/usr/bin/env bash
# Copies the top-level CRDs (the source of truth) into the chart's crds/ folder, which Helm installs before
# the templates. tests/integration/test_chart.py fails when the two folders differ; run this to fix it.
#   bash charts/sync-crds.sh          copy, removing chart CRDs that no longer exist at the top level
#   bash charts/sync-crds.sh --check  exit 1 and name the differences instead of copying
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
src="$repo/crds"
dst="$repo/charts/modelrollout/crds"

if [ "${1:-}" = "--check" ]; then
  diff -r "$src" "$dst" >&2 || { echo "charts/modelrollout/crds/ is out of date: run bash charts/sync-crds.sh" >&2; exit 1; }
  exit 0
fi
mkdir -p "$dst"
find "$dst" -maxdepth 1 -type f -name '*.yaml' -delete
cp "$src"/*.yaml "$dst"/
echo "synced $(find "$dst" -maxdepth 1 -name '*.yaml' | wc -l) CRDs into ${dst#"$repo"/}"
