"""Two processes x 4 devices (jax.distributed on loopback) train like one process x 8."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

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
        path = Path(workdir) / "checkpoints" / "3" / "default"
        ckptr = ocp.PyTreeCheckpointer()
        meta = ckptr.metadata(path).item_metadata.tree
        as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), meta)
        return ckptr.restore(path, args=ocp.args.PyTreeRestore(restore_args=as_numpy))["params"]

    # Different collectives sum in a different order; AdamW turns that rounding noise in
    # the exactly-zero gradients of some biases into updates, hence the absolute floor.
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                 restore(tmp_path / "two"), restore(tmp_path / "one"))
