#!/usr/bin/env bash
# The README's main command as a new user runs it: a fresh virtual environment (no system site
# packages) under /tmp, the README's command verbatim with --config.quick=True, then `pip check`;
# the run must record the bubblewrap isolation level in its summary.
set -euo pipefail
cd "$(dirname "$0")/.."
fresh="$(mktemp -d /tmp/restrl-fresh.XXXXXX)"
trap 'rm -rf "$fresh"' EXIT
python3 -m venv "$fresh/venv"
command="$(python3 .ci/readme_command.py main) --config.quick=True --config.workdir=$fresh/run"
(
  # shellcheck disable=SC1091
  . "$fresh/venv/bin/activate"
  echo "fresh user: $command"
  start=$SECONDS
  eval "$command"
  python -m pip check
  echo "fresh user: README main command (quick) done in $((SECONDS - start)) s"
)
if ! grep -q "isolation=bwrap" "$fresh/run/summary.md"; then
  echo "fresh user: the run's summary does not record isolation=bwrap:" >&2
  cat "$fresh/run/summary.md" >&2
  exit 1
fi
