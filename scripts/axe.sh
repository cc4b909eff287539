#!/usr/bin/env bash
# Installs axe-core (the accessibility engine the browser tests inject into each page) with npm,
# cached outside the repository under $KHO_CACHE_DIR/npm. Idempotent: a second run does nothing.
#   scripts/axe.sh            -> prints the path of axe.min.js
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

prefix="$KHO_CACHE_DIR/npm"
axe="$prefix/node_modules/axe-core/axe.min.js"
if [ ! -s "$axe" ]; then
  command -v npm >/dev/null || die "npm is needed to install axe-core (apt-get install npm)"
  mkdir -p "$prefix"
  log "installing axe-core 4 into $prefix"
  npm install --prefix "$prefix" --no-audit --no-fund --no-save --loglevel=error axe-core@4 >&2
  [ -s "$axe" ] || die "axe-core did not install ($axe is missing)"
fi
printf '%s\n' "$axe"
