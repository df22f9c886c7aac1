#!/usr/bin/env bash
# Delete the TPU VM or pod slice (the bucket and its checkpoints stay).
#   launch/delete.sh --name NAME --zone ZONE [--project P] [--dry-run]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
parse_flags "$@"
require --name --zone
tpu_flags
run gcloud compute tpus tpu-vm delete "$NAME" "${TPU_FLAGS[@]}" --quiet
