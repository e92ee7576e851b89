"""The eval_seg binary end to end on a generated folder dataset with an exported tiny
model, and the same evaluation as the trainer's periodic "seg" evaluator."""
import json
import os
import subprocess
import sys
from pathlib import Path

import ml_collections
import numpy as np
import pytest
from PIL import Image

import groupvit_jax as gv
from groupvit_jax import evaluators
from tests.test_eval_protocol import random_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def folder_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    (root / "classes.txt").write_text("background\nred square\nblue disc\n")
    rng = np.random.default_rng(0)
    for name, hw in (("wide", (300, 410)), ("tall", (460, 333)), ("odd", (217, 301))):
        image = np.full((*hw, 3), 90, np.uint8)
        label = np.zeros(hw, np.uint8)
        image[20:120, 40:160] = (220, 30, 30)
        label[20:120, 40:160] = 1
        yy, xx = np.mgrid[:hw[0], :hw[1]]
        disc = (yy - 150) ** 2 + (xx - 200) ** 2 < 50 ** 2
        image[disc] = (30, 30, 220)
        label[disc] = 2
        label[:3] = 255
        image = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / f"{name}.jpg")
        Image.fromarray(label).save(root / "labels" / f"{name}.png")
    return root


@pytest.mark.slow  # ~30 s: a subprocess compiles the tiny model's window pass again
def test_binary_and_seg_evaluator_agree(folder_dataset, tmp_path):
    model = random_model()
    gv.export(model, tmp_path / "model")
    out, vis = tmp_path / "results.json", tmp_path / "vis"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-m", "groupvit_jax.eval_seg", "--checkpoint", str(tmp_path / "model"),
         "--dataset", "folder", "--data_dir", str(folder_dataset), "--out", str(out),
         "--vis_dir", str(vis), "--limit", "2", "--bg_thresh", "0.5"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[2/2]" in proc.stdout and "images/s" in proc.stdout and "mIoU" in proc.stdout
    results = json.loads(out.read_text())
    assert results["num_images"] == 2 and results["bg_thresh"] == 0.5
    assert list(results["per_class"]) == ["background", "red square", "blue disc"]
    assert results["templates"] == ["a photo of a {}."]
    assert sorted(p.name for p in vis.iterdir()) == ["odd.png", "tall.png"]
    assert Image.open(vis / "tall.png").size == (333, 460)

    # The trainer's evaluator on the same model and images gives the same numbers.
    cfg = ml_collections.ConfigDict({"kind": "seg", "every_steps": 1, "dataset": "folder",
                                     "data_dir": str(folder_dataset), "limit": 2,
                                     "bg_thresh": 0.5})
    [(name, _, run)] = evaluators.create({"seg_folder": cfg}, None)
    metrics = run(gv.load_pretrained(tmp_path / "model"))
    assert metrics["mIoU"] == pytest.approx(results["mIoU"], abs=1e-9)
    assert metrics["aAcc"] == pytest.approx(results["aAcc"], abs=1e-9)


def test_binary_reports_a_broken_dataset(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "groupvit_jax.eval_seg", "--checkpoint", str(tmp_path),
         "--dataset", "voc", "--data_dir", str(tmp_path / "VOC2012")],
        cwd=ROOT, env={**os.environ, "JAX_PLATFORMS": "cpu"}, capture_output=True,
        text=True, timeout=300)
    assert proc.returncode == 1
    assert "error: missing:" in proc.stderr and "JPEGImages" in proc.stderr
