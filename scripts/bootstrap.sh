#!/usr/bin/env bash
# Creates (or reuses) the Python environment for this checkout and installs Kho into it.
# The environment is cached outside the repository, keyed by the dependency list, so a second
# clone on the same machine only re-links the project (a few seconds).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$KHO_ROOT"

python_bin="${KHO_PYTHON:-python3}"
"$python_bin" -c 'import sys; assert sys.version_info >= (3, 11), sys.version' \
  || die "Python 3.11 or newer is needed (set KHO_PYTHON)"

deps_hash=$("$python_bin" - <<'PY'
import hashlib, os, sys, tomllib
with open("pyproject.toml", "rb") as f:
    p = tomllib.load(f)["project"]
# The checkout path is part of the key: the project is installed editable, so two clones
# sharing one environment would import each other's code.
text = repr((sys.version_info[:2], p["dependencies"], p["optional-dependencies"], os.getcwd()))
print(hashlib.sha256(text.encode()).hexdigest()[:16])
PY
)
venv="$KHO_CACHE_DIR/venv-$deps_hash"
export PIP_CACHE_DIR="$KHO_CACHE_DIR/pip"
mkdir -p "$KHO_CACHE_DIR"
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
  log "creating the Python environment in $venv"
  rm -rf "$venv"
  "$python_bin" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q "setuptools>=77" wheel
  "$venv/bin/pip" install -q -e ".[dev]"
  touch "$venv/.complete"
fi
# Re-link this checkout (editable): cheap, no dependency resolution.
"$venv/bin/pip" install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1
ln -sfn "$venv" .venv
