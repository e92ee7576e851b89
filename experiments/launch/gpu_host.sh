#!/usr/bin/env bash
# Train on one GPU host (all its GPUs form the data axis of the mesh).
#   experiments/launch/gpu_host.sh CONFIG[:VARIANT] WORKDIR
# One GPU reaching the paper's batch: CONFIG = configs/gcc_yfcc_2stage.py:gpu1.
# Several hosts: run this on each with JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and
# JAX_PROCESS_ID set (or under SLURM) and add --jax_distributed.
set -euo pipefail
config=$1 workdir=$2
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
test -d .venv || python3 -m venv .venv
.venv/bin/pip install -q -e '.[cuda]'
# Let XLA take most of the GPU memory up front.
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.92}
exec .venv/bin/python -m groupvit_jax.train --config="$config" --workdir="$workdir" "${@:3}"
