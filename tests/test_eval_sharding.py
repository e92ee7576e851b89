"""Windows sharded over 8 (fake CPU) devices give the same labels as one device, and two
processes (jax.distributed on loopback) splitting the images give one process's mIoU."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.eval_data import blocky_images

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import sys
import jax
import numpy as np
from groupvit_jax.evaluation.predict import SegmentationPredictor
from tests.eval_data import blocky_images
from tests.tiny_pretrained import random_model

predictor = SegmentationPredictor(random_model(), ["cat", "dog", "tree"], bg_thresh=0.35)
assert jax.local_device_count() == predictor.window_batch // 8 == int(sys.argv[2])
labels = predictor.predict(blocky_images())
np.savez(sys.argv[1], *labels)
"""


EVAL_SCRIPT = """
import json, sys
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
process_id, count, port, data_dir, vis_dir = (int(sys.argv[1]), int(sys.argv[2]), sys.argv[3],
                                              sys.argv[4], sys.argv[5])
if count > 1:
    jax.distributed.initialize(f"127.0.0.1:{port}", count, process_id)
from groupvit_jax.evaluation import datasets, segmentation
from tests.tiny_pretrained import random_model

dataset = datasets.folder(data_dir)
predictor = segmentation.make_predictor(random_model(), dataset, 0.35)
result = segmentation.evaluate(predictor, dataset, log=None, vis_dir=vis_dir)
print("RESULT", json.dumps({k: result[k] for k in ("mIoU", "aAcc", "num_pixels", "per_class")}))
"""


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
    for image, a, b in zip(blocky_images(), one, eight):
        assert a.shape == image.shape[:2]
        np.testing.assert_array_equal(a, b)


def _write_folder(root: Path) -> None:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "classes.txt").write_text("background\ncat\ndog\ntree\n")
    for i, image in enumerate(blocky_images()):
        Image.fromarray(image).save(root / "images" / f"{i}.png")
        label = (image[..., 0] // 64).astype(np.uint8)  # 0..3, blocky like the image
        label[:2] = 255
        Image.fromarray(label).save(root / "labels" / f"{i}.png")


def _evaluate(data_dir: Path, processes: int, vis: Path) -> list[dict]:
    """Each process's results; process i draws into vis/i (as on hosts without a shared
    disk)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    procs = [subprocess.Popen([sys.executable, "-c", EVAL_SCRIPT, str(i), str(processes),
                               str(port), str(data_dir), str(vis / str(i))], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(processes)]
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    return [json.loads(next(line for line in out.splitlines()
                            if line.startswith("RESULT"))[len("RESULT"):]) for out in outputs]


@pytest.mark.slow  # three processes compile the tiny model (~1 min)
def test_two_hosts_split_the_images_and_sum_the_counts(tmp_path):
    _write_folder(tmp_path / "data")
    two = _evaluate(tmp_path / "data", 2, tmp_path / "two")
    [one] = _evaluate(tmp_path / "data", 1, tmp_path / "one")
    assert two[0] == two[1] == one  # 3 images: host 0 gets 2, host 1 gets 1 and a pad
    # The first host draws every image's picture, the same as one process; the other none.
    drawn = sorted(p.name for p in (tmp_path / "one" / "0").iterdir())
    assert drawn == ["0.png", "1.png", "2.png"]
    assert sorted(p.name for p in (tmp_path / "two" / "0").iterdir()) == drawn
    assert not (tmp_path / "two" / "1").exists()
    for name in drawn:
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "two" / "0" / name)),
                                      np.asarray(Image.open(tmp_path / "one" / "0" / name)))
    assert one["num_pixels"] == sum(h * w - 2 * w for h, w, _ in
                                    (i.shape for i in blocky_images()))
