#!/usr/bin/env bash
# Train on one GPU host (all its GPUs form the data axis of the mesh).
#   experiments/launch/gpu_host.sh CONFIG[:VARIANT] WORKDIR [--config.x=y ...]
# One GPU reaching the paper's batch: CONFIG = configs/gcc_yfcc_2stage.py:gpu1.
# Several hosts: run this on each with JAX_COORDINATOR_ADDRESS (host 0's address:port),
# JAX_NUM_PROCESSES and JAX_PROCESS_ID set, or as the tasks of one srun step (jax then
# gives each task the GPU of its SLURM_LOCALID: one task per GPU); the trainer joins them.
# LAUNCH_SKIP_SETUP=1: .venv is already installed; PYTHON: the interpreter to run.
set -euo pipefail
config=$1 workdir=$2
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
if [[ ${LAUNCH_SKIP_SETUP:-0} != 1 ]]; then
  test -d .venv || python3 -m venv .venv
  .venv/bin/pip install -q -e '.[cuda]'
fi
# Let XLA take most of the GPU memory up front.
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.92}
exec "${PYTHON:-.venv/bin/python}" -m groupvit_jax.train --config="$config" --workdir="$workdir" "${@:3}"
