#!/usr/bin/env bash
# Installs restrl_jax from this checkout (editable) into the active Python environment.
#   bash install.sh          the package (what `python -m restrl_jax.main` needs)
#   bash install.sh test     the package and the test suite's dependencies
# On Debian/Ubuntu it first installs bubblewrap where it is missing: generated programs run in a
# bubblewrap sandbox, and a run stops rather than fall back to a weaker one unless asked to
# (`--config.execution.isolation=rlimits`, see docs/execution.md).
set -euo pipefail
cd "$(dirname "$0")"

install_bubblewrap() {
  command -v bwrap >/dev/null 2>&1 && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "install.sh: bubblewrap (bwrap) is missing; install it with your system's package manager" >&2
    return 0
  fi
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "install.sh: bubblewrap (bwrap) is missing: installing it with ${sudo:+sudo }apt-get" >&2
  if ! { $sudo apt-get update -qq && $sudo apt-get install -y -qq bubblewrap; } >/dev/null; then
    echo "install.sh: could not install bubblewrap; runs will stop and say how to fix it" >&2
  fi
}

install_bubblewrap
case "${1:-}" in
  "") python -m pip install -e . ;;
  test) python -m pip install -e ".[test]" ;;
  *) echo "usage: bash install.sh [test]" >&2; exit 2 ;;
esac
