#!/usr/bin/env bash
# The whole test suite, as CI runs it: environment, real servers, static checks, pytest.
#   scripts/test.sh [pytest arguments...]
# Starts (or reuses) PostgreSQL 15, MinIO and Keycloak 26.7 and installs Chromium when absent;
# every test that needs one of them talks to it, and fails if it is missing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$KHO_ROOT"
started=$(date +%s)

step() { printf '\n[kho] == %s (%ss)\n' "$*" "$(( $(date +%s) - started ))" >&2; }

step "python environment"
scripts/bootstrap.sh
py=.venv/bin

step "test servers"
scripts/services.sh start
scripts/axe.sh >/dev/null
services_env="${KHO_SERVICES_DIR:-/var/tmp/kho-services}/services.env"
set -a
# shellcheck disable=SC1090
source "$services_env"
set +a

step "ruff"
$py/ruff check .
$py/ruff format --check .

step "mypy (strict)"
$py/mypy .

step "layer contract (import-linter)"
$py/lint-imports

step "migration drift (PostgreSQL)"
drift_db="kho_drift_$$"
DRIFT_ADMIN_URL="$KHO_TEST_PG_ADMIN_URL" $py/python - "$drift_db" <<'PY'
import os, sys
from sqlalchemy import create_engine, text
engine = create_engine(os.environ["DRIFT_ADMIN_URL"], isolation_level="AUTOCOMMIT")
with engine.connect() as c:
    c.execute(text(f'DROP DATABASE IF EXISTS "{sys.argv[1]}"'))
    c.execute(text(f'CREATE DATABASE "{sys.argv[1]}"'))
PY
drift_url="${KHO_TEST_DATABASE_URL%/*}/$drift_db"
KHO_DATABASE_URL="$drift_url" $py/kho migrate up >/dev/null
KHO_DATABASE_URL="$drift_url" $py/kho migrate check

step "pytest"
set +e
$py/pytest -p no:cacheprovider "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "[kho] error: pytest collected no tests" >&2
fi
step "done (pytest exit $status)"
exit "$status"
