#!/usr/bin/env bash
# Creates (or refreshes) the model server's own virtual environment.
# Idempotent: a stamp file holds the hash of the inputs; when it matches, nothing runs.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$here/.." && pwd)"
venv="${MODEL_SERVER_VENV:-$repo_root/.venv-model-server}"
python="${PYTHON:-python3}"
stamp="$venv/.modelserver-env-stamp"

# The stamp covers everything that changes what gets installed.
inputs_hash="$(cat "$here/requirements.txt" "$here/pyproject.toml" | sha256sum | cut -d' ' -f1)"
wanted="$inputs_hash $("$python" -c 'import sys; print(sys.version.split()[0])')"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" && -x "$venv/bin/python" ]]; then
    echo "model server env up to date: $venv"
    exit 0
fi

echo "creating model server env in $venv"
"$python" -m venv "$venv"
log="$venv/setup-env.log"
pip() { "$venv/bin/python" -m pip --disable-pip-version-check "$@" >>"$log" 2>&1; }
# pip's output goes to a log (setuptools is chatty about editable installs); shown when a step fails.
: >"$log"
if ! { pip install --upgrade pip \
    && pip install -r "$here/requirements.txt" \
    && pip install --no-deps --no-build-isolation -e "$here" \
    && pip check; }; then
    tail -40 "$log" >&2
    echo "model server env: pip failed, full log in $log" >&2
    exit 1
fi
# requirements.txt is the pinned set, hence --no-deps for the package itself above.
"$venv/bin/python" -c 'import modelserver, seldon_core, sklearn; print("model server env ready:", sklearn.__version__)'
echo "$wanted" > "$stamp"
