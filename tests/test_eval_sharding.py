"""Windows sharded over 8 (fake CPU) devices give the same labels as one device."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import sys
import jax
import numpy as np
from groupvit_jax.evaluation.predict import SegmentationPredictor
from tests.test_eval_protocol import random_model
from tests.test_eval_sharding import images

predictor = SegmentationPredictor(random_model(), ["cat", "dog", "tree"], bg_thresh=0.35)
assert jax.local_device_count() == predictor.window_batch // 2 == int(sys.argv[2])
labels = predictor.predict(images())
np.savez(sys.argv[1], *labels)
"""


def images():
    rng = np.random.default_rng(3)
    out = []
    for hw in ((375, 500), (500, 333), (217, 901)):  # 2, 2 and 4 windows (one odd size)
        small = rng.integers(0, 256, (5, 7, 3)).astype(np.float32)
        out.append(np.kron(small, np.ones((80, 140, 1)))[:hw[0], :hw[1]].astype(np.uint8))
    return out


def _run(out: Path, devices: int) -> list[np.ndarray]:
    flags = os.environ.get("XLA_FLAGS", "")
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count={devices}"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(out), str(devices)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(out) as f:
        return [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]


@pytest.mark.slow  # two subprocesses compile the tiny model (~40 s)
def test_eight_devices_match_one(tmp_path):
    one, eight = _run(tmp_path / "one.npz", 1), _run(tmp_path / "eight.npz", 8)
    for image, a, b in zip(images(), one, eight):
        assert a.shape == image.shape[:2]
        np.testing.assert_array_equal(a, b)
