#!/usr/bin/env bash
# Debug the whole training path on a laptop CPU: a tiny model, 30 steps, real checkpoints.
#   experiments/launch/cpu_debug.sh [WORKDIR] [extra --config.x=y overrides]
# Add --config.mesh.model=2 with XLA_FLAGS=--xla_force_host_platform_device_count=8 to
# exercise parameter sharding on 8 fake devices.
# LAUNCH_SKIP_SETUP=1: .venv is already installed; PYTHON: the interpreter to run.
set -euo pipefail
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
if [[ ${LAUNCH_SKIP_SETUP:-0} != 1 ]]; then make .venv/.installed >/dev/null; fi
exec "${PYTHON:-.venv/bin/python}" -m groupvit_jax.train --config=configs/gcc_yfcc_2stage.py:runlocal \
  --workdir="${1:-/tmp/groupvit_debug}" "${@:2}"
