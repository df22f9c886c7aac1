#!/usr/bin/env bash
# shellcheck disable=SC2034  # variables set here are read by the scripts that source this file
# Shared flag parsing and command runner for the launch/*.sh scripts (sourced, not run).
#
# Flags (every script accepts all of them; each uses the ones it needs):
#   --name NAME               TPU VM / pod slice name (required)
#   --zone ZONE               e.g. us-central2-b (required)
#   --project PROJECT         gcloud project (default: gcloud's configured one)
#   --preset PRESET           hardware preset (restrl_jax/mesh_presets.py): fills
#                             --accelerator-type and --version, and --config.mesh.preset
#   --accelerator-type TYPE   e.g. v5litepod-16
#   --version VERSION         TPU software image, e.g. v2-alpha-tpuv5-lite
#   --config FILE             pipeline config, e.g. configs/apps.py
#   --gcs-bucket BUCKET       bucket (no gs://) for data, checkpoints and run folders
#   --worker WORKER           "all" (default) or a worker index (logs.sh: default 0)
#   --spot                    create.sh: a Spot (preemptible) VM
#   --dry-run                 print every command exactly, run nothing
#   -- ARGS...                run.sh: extra --config.* overrides for restrl_jax.main
set -euo pipefail

NAME="" ZONE="" PROJECT="" PRESET="" ACCEL="" VERSION="" CONFIG="" BUCKET="" WORKER=""
SPOT=0 DRY_RUN=0
EXTRA=()
# Remote paths are relative to the worker's home folder (where gcloud ssh commands start).
REMOTE_DIR=restrl_jax              # the repository on every worker; data in shared/data next to it
MOUNT_DIR=gcs                      # the bucket, mounted with gcsfuse on every worker
LOG_FILE=restrl_jax_run.log

usage() {
  sed -n "3,/^set -euo/p" "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
}

die() {
  echo "error: $*" >&2
  exit 2
}

parse_flags() {
  while (($#)); do
    case "$1" in
      --name) NAME="${2:?--name needs a value}"; shift 2 ;;
      --zone) ZONE="${2:?--zone needs a value}"; shift 2 ;;
      --project) PROJECT="${2:?--project needs a value}"; shift 2 ;;
      --preset) PRESET="${2:?--preset needs a value}"; shift 2 ;;
      --accelerator-type) ACCEL="${2:?--accelerator-type needs a value}"; shift 2 ;;
      --version) VERSION="${2:?--version needs a value}"; shift 2 ;;
      --config) CONFIG="${2:?--config needs a value}"; shift 2 ;;
      --gcs-bucket) BUCKET="${2:?--gcs-bucket needs a value}"; BUCKET="${BUCKET#gs://}"; shift 2 ;;
      --worker) WORKER="${2:?--worker needs a value}"; shift 2 ;;
      --spot) SPOT=1; shift ;;
      --dry-run) DRY_RUN=1; shift ;;
      -h|--help) usage ;;
      --) shift; EXTRA=("$@"); break ;;
      *) die "unknown flag $1 (see --help)" ;;
    esac
  done
  local word
  for word in "${EXTRA[@]}"; do   # a --dry-run after "--" still means dry run
    if [[ "$word" == --dry-run ]]; then
      DRY_RUN=1
    fi
  done
  if [[ -n "$PRESET" ]]; then
    apply_preset "$PRESET"
  fi
}

# Mirrors restrl_jax/mesh_presets.py (tests/test_launch.py checks that they agree).
apply_preset() {
  local accel version
  case "$1" in
    v4-8) accel=v4-8 version=tpu-ubuntu2204-base ;;
    v5e-8) accel=v5litepod-8 version=v2-alpha-tpuv5-lite ;;
    v5e-16) accel=v5litepod-16 version=v2-alpha-tpuv5-lite ;;
    v5e-64) accel=v5litepod-64 version=v2-alpha-tpuv5-lite ;;
    v5p-8) accel=v5p-8 version=v2-alpha-tpuv5 ;;
    v5p-128) accel=v5p-128 version=v2-alpha-tpuv5 ;;
    *) die "--preset $1 is not a TPU preset (v4-8 v5e-8 v5e-16 v5e-64 v5p-8 v5p-128)" ;;
  esac
  ACCEL="${ACCEL:-$accel}"
  VERSION="${VERSION:-$version}"
}

require() {
  local flag var
  for flag in "$@"; do
    var="${flag#--}"
    case "$var" in
      name) [[ -n "$NAME" ]] || die "--name is required" ;;
      zone) [[ -n "$ZONE" ]] || die "--zone is required" ;;
      accelerator-type) [[ -n "$ACCEL" ]] || die "--accelerator-type (or --preset) is required" ;;
      version) [[ -n "$VERSION" ]] || die "--version (or --preset) is required" ;;
      config) [[ -n "$CONFIG" ]] || die "--config is required" ;;
      gcs-bucket) [[ -n "$BUCKET" ]] || die "--gcs-bucket is required" ;;
      *) die "internal: unknown required flag $flag" ;;
    esac
  done
}

# Print one word so that bash reads it back unchanged.
quote_word() {
  if [[ "$1" =~ ^[A-Za-z0-9_./:=@,+%^-]+$ ]]; then
    printf '%s' "$1"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}

# run CMD ARGS...: print the exact command; execute it unless --dry-run.
run() {
  local first=1 word
  for word in "$@"; do
    ((first)) || printf ' '
    first=0
    quote_word "$word"
  done
  printf '\n'
  if ((DRY_RUN == 0)); then
    "$@"
  fi
}

# gcloud flags shared by every tpu-vm command
tpu_flags() {
  TPU_FLAGS=(--zone="$ZONE")
  if [[ -n "$PROJECT" ]]; then
    TPU_FLAGS+=(--project="$PROJECT")
  fi
}

# ssh_workers WORKER COMMAND: run COMMAND on the slice's workers (all, or one index)
ssh_workers() {
  tpu_flags
  run gcloud compute tpus tpu-vm ssh "$NAME" "${TPU_FLAGS[@]}" --worker="$1" --command "$2"
}
