#!/usr/bin/env bash
# Train on a Cloud TPU pod slice: ships this checkout (HEAD plus edits to tracked files) to
# every worker, sets each up, then runs the same command on all.
#   experiments/launch/tpu_pod.sh TPU_NAME ZONE CONFIG[:VARIANT] GCS_WORKDIR [--config.x=y ...]
# e.g. experiments/launch/tpu_pod.sh gv-v4-64 us-central2-b configs/gcc_yfcc_2stage.py gs://bucket/gcc_yfcc
# A slice made by `gcloud compute tpus tpu-vm create` lists its workers in the metadata
# server only, which jax.distributed reads itself: hence --jax_distributed. Rerunning
# replaces the code on the workers and resumes from the workdir.
# LAUNCH_SKIP_SETUP=1: the workers' ~/groupvit_venv is already installed.
set -euo pipefail
name=$1 zone=$2 config=$3 workdir=$4
repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
archive=$scratch/groupvit_jax.tar.gz
snapshot=$(git -C "$repo" stash create)  # empty when nothing is edited
git -C "$repo" archive --format=tar.gz -o "$archive" "${snapshot:-HEAD}"
gcloud compute tpus tpu-vm scp --zone "$zone" --worker=all "$archive" "$name":groupvit_jax.tar.gz
setup="python3 -m venv ~/groupvit_venv && ~/groupvit_venv/bin/pip install -q -e '.[tpu]' && "
if [[ ${LAUNCH_SKIP_SETUP:-0} == 1 ]]; then setup=""; fi
train="~/groupvit_venv/bin/python -m groupvit_jax.train$(printf ' %q' "--config=$config" \
  "--workdir=$workdir" --jax_distributed "${@:5}")"
# gs:// files go through epath's gcsfs backend, the one tests/test_gcs.py runs against a
# local storage emulator (groupvit_jax/train/README.md#files-in-a-bucket).
gcloud compute tpus tpu-vm ssh "$name" --zone "$zone" --worker=all --command "rm -rf \
~/groupvit_jax && mkdir ~/groupvit_jax && tar -xzf ~/groupvit_jax.tar.gz -C ~/groupvit_jax && \
cd ~/groupvit_jax && export EPATH_USE_TF=false && $setup$train"
