"""Two processes x 4 devices (jax.distributed on loopback) train like one process x 8."""
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from groupvit_jax.export import read_training_checkpoint

SCRIPT = os.path.join(os.path.dirname(__file__), "multiprocess_train.py")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(num_processes, devices, workdir):
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, SCRIPT, str(i), str(num_processes), str(port),
                               str(devices), str(workdir)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(num_processes)]
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    return [next(l for l in out.splitlines() if l.startswith("LOSSES")) for out in outputs]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    two = _run(2, 4, tmp_path / "two")
    one = _run(1, 8, tmp_path / "one")
    assert two[0] == two[1]  # every host logs the same global metrics
    losses_two = np.array(eval(two[0][len("LOSSES"):]))
    losses_one = np.array(eval(one[0][len("LOSSES"):]))
    np.testing.assert_allclose(losses_two, losses_one, rtol=1e-5)

    def restore(workdir):  # as numpy, whatever device topology saved it
        return read_training_checkpoint(workdir, 3).variables["params"]

    # Different collectives sum in a different order; AdamW turns that rounding noise in
    # the exactly-zero gradients of some biases into updates, hence the absolute floor.
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                 restore(tmp_path / "two"), restore(tmp_path / "one"))
