"""The eval_seg binary end to end on a generated folder dataset with an exported tiny
model, and the same evaluation as the trainer's periodic "seg" evaluator."""
import json
import os
import subprocess
import sys
from pathlib import Path

import ml_collections
import pytest
from PIL import Image

import groupvit_jax as gv
from groupvit_jax.evaluation import registry
from tests.tiny_pretrained import random_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # ~30 s: a subprocess compiles the tiny model's window pass again
def test_binary_and_seg_evaluator_agree(folder_dataset, tmp_path):
    model = random_model()
    gv.export(model, tmp_path / "model")
    out, vis = tmp_path / "results.json", tmp_path / "vis"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-m", "groupvit_jax.evaluation.eval_seg", "--checkpoint", str(tmp_path / "model"),
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
    [(name, _, run)] = registry.create({"seg_folder": cfg}, None)
    metrics = run(gv.load_pretrained(tmp_path / "model"))
    assert metrics["mIoU"] == pytest.approx(results["mIoU"], abs=1e-9)
    assert metrics["aAcc"] == pytest.approx(results["aAcc"], abs=1e-9)


def test_binary_reports_a_broken_dataset(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "groupvit_jax.evaluation.eval_seg", "--checkpoint", str(tmp_path),
         "--dataset", "voc", "--data_dir", str(tmp_path / "VOC2012")],
        cwd=ROOT, env={**os.environ, "JAX_PLATFORMS": "cpu"}, capture_output=True,
        text=True, timeout=300)
    assert proc.returncode == 3
    assert "error: missing:" in proc.stderr and "JPEGImages" in proc.stderr
