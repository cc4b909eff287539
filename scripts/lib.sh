# Shared helpers for Kho's scripts. Source it; do not run it.
# Caches live outside the repository so that a fresh clone reuses earlier downloads and builds.
KHO_CACHE_DIR="${KHO_CACHE_DIR:-/var/cache/kho}"
KHO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export KHO_CACHE_DIR KHO_ROOT

log() { printf '[kho] %s\n' "$*" >&2; }
die() { printf '[kho] error: %s\n' "$*" >&2; exit 1; }
