#!/usr/bin/env bash
# Install this repository on every worker and make the bucket's data reachable there:
# pack the checkout, copy it to all workers, pip install it with JAX for TPU, mount the bucket
# with gcsfuse at ~/gcs (shared run folders and orbax checkpoints), and copy the datasets from
# gs://BUCKET/data to ~/shared/data (where the loaders look, next to the repository).
#   launch/setup.sh --name NAME --zone ZONE --gcs-bucket BUCKET [--project P] [--dry-run]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
parse_flags "$@"
require --name --zone --gcs-bucket
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tarball="/tmp/restrl_jax-${NAME}.tar.gz"
tpu_flags
run tar -czf "$tarball" -C "$repo" --exclude=.git --exclude=runs --exclude='*.pyc' .
run gcloud compute tpus tpu-vm scp "$tarball" "$NAME:restrl_jax.tar.gz" "${TPU_FLAGS[@]}" \
  --worker=all
ssh_workers all "mkdir -p $REMOTE_DIR && tar -xzf restrl_jax.tar.gz -C $REMOTE_DIR && \
python3 -m pip install -q -e $REMOTE_DIR 'jax[tpu]' -f https://storage.googleapis.com/jax-releases/libtpu_releases.html"
ssh_workers all "mkdir -p $MOUNT_DIR && (mountpoint -q $MOUNT_DIR || \
gcsfuse --implicit-dirs $BUCKET $MOUNT_DIR)"
ssh_workers all "mkdir -p shared/data && gcloud storage rsync -r gs://$BUCKET/data shared/data"
