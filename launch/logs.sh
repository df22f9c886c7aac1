#!/usr/bin/env bash
# Stream the run's log from one worker (default 0, the one that writes summaries).
#   launch/logs.sh --name NAME --zone ZONE [--worker 3] [--dry-run]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
parse_flags "$@"
require --name --zone
ssh_workers "${WORKER:-0}" "tail -n +1 -F $LOG_FILE"
