#!/usr/bin/env bash
# Train on a Cloud TPU pod slice: sets up every worker, then runs the same command on all.
#   experiments/launch/tpu_pod.sh TPU_NAME ZONE CONFIG[:VARIANT] GCS_WORKDIR
# e.g. experiments/launch/tpu_pod.sh gv-v4-64 us-central2-b configs/gcc_yfcc_2stage.py gs://bucket/gcc_yfcc
# jax.distributed initialises itself on TPU pods; rerunning resumes from the workdir.
set -euo pipefail
name=$1 zone=$2 config=$3 workdir=$4
repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
gcloud compute tpus tpu-vm scp --recurse --zone "$zone" --worker=all "$repo" "$name":~/groupvit_jax
gcloud compute tpus tpu-vm ssh "$name" --zone "$zone" --worker=all --command "
  cd ~/groupvit_jax && python3 -m venv .venv && .venv/bin/pip install -q -e '.[tpu]' &&
  .venv/bin/python -m groupvit_jax.train --config=$config --workdir=$workdir --jax_distributed"
