#!/usr/bin/env bash
# Create a TPU VM or pod slice.
#   launch/create.sh --name NAME --zone ZONE --preset v5e-16 [--project P] [--spot] [--dry-run]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
parse_flags "$@"
require --name --zone --accelerator-type --version
tpu_flags
args=(gcloud compute tpus tpu-vm create "$NAME" "${TPU_FLAGS[@]}"
      --accelerator-type="$ACCEL" --version="$VERSION")
if ((SPOT)); then
  args+=(--spot)
fi
run "${args[@]}"
