#!/usr/bin/env bash
# Start `python3 -m restrl_jax.main` on every worker of the slice (all at once; JAX joins them
# through jax.distributed with Cloud TPU auto-detection). The run folder lives in the mounted
# bucket (gcs/runs/NAME), so every host saves its orbax shards there and a rerun of this script
# after a preemption resumes from the newest checkpoint. Output goes to ~/restrl_jax_run.log.
#   launch/run.sh --name NAME --zone ZONE --config configs/apps.py --gcs-bucket BUCKET \
#       [--preset v5e-16] [--dry-run] [-- --config.a.b=value ...]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
parse_flags "$@"
require --name --zone --config --gcs-bucket
main=(python3 -m restrl_jax.main "--config=$CONFIG" --config.distributed.enabled=True
      "--config.workdir=../$MOUNT_DIR/runs/$NAME")
if [[ -n "$PRESET" ]]; then
  main+=("--config.mesh.preset=$PRESET")
fi
main+=("${EXTRA[@]}")
command="cd $REMOTE_DIR && nohup"
for word in "${main[@]}"; do
  command+=" $(quote_word "$word")"
done
command+=" > ../$LOG_FILE 2>&1 &"
ssh_workers all "$command"
