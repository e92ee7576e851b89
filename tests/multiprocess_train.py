"""One training process of a multi-process run on loopback (used by test_multiprocess.py).

    python -m tests.multiprocess_train PROCESS_ID NUM_PROCESSES PORT DEVICES WORKDIR
"""
import os
import sys

process_id, num_processes, port, devices, workdir = sys.argv[1:6]
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402

jax.config.update("jax_cpu_collectives_implementation", "gloo")
if int(num_processes) > 1:
    jax.distributed.initialize(f"127.0.0.1:{port}", int(num_processes), int(process_id))

from pathlib import Path  # noqa: E402

from groupvit_jax.train import trainer  # noqa: E402
from tests.config_files import ROOT, load_config  # noqa: E402

config = load_config(ROOT / "configs/gcc_yfcc_2stage.py", "runlocal")
config.total_steps = 3
config.log_every_steps = 1
history = trainer.train_and_evaluate(config, Path(workdir))
print("LOSSES", [h["loss"] for h in history if "loss" in h])
