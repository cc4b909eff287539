#!/usr/bin/env bash
# Run Kho on its embedded default: SQLite, local object store and a generated development master
# key under ./var, served on http://127.0.0.1:8000. Extra arguments go to `kho serve`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$KHO_ROOT"
scripts/bootstrap.sh
exec .venv/bin/kho serve "$@"
