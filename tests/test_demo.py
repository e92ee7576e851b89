"""The demo binary end to end on a tiny exported model and a non-square image."""
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import groupvit_jax as gv
from groupvit_jax.evaluation import demo
from tests.tiny_pretrained import tiny_pretrained

REPO = Path(__file__).resolve().parents[1]
H, W = 90, 170


@pytest.fixture(scope="module")
def model():
    # 16-pixel patches, as the real model: at the protocol's 448 scale, 8-pixel ones would
    # give 4x the tokens and make the tiny model slower than it needs to be.
    return tiny_pretrained(seed=1, patch_size=16)


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory):
    return gv.export(model, tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (H, W, 3)).astype(np.uint8)
    image[:, W // 2:] //= 3  # two halves, so the groups have something to split
    path = tmp_path_factory.mktemp("img") / "photo.jpg"
    Image.fromarray(image).save(path, quality=95)
    return path


def test_demo_binary_writes_its_pictures(checkpoint, image_file, tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
    done = subprocess.run(
        [sys.executable, "-m", "groupvit_jax.evaluation.demo", "--checkpoint", str(checkpoint),
         "--image", str(image_file), "--classes", "cat, dog,grass", "--out", str(out),
         "--no_background"], capture_output=True, text=True, env=env, cwd=REPO,
        timeout=300)
    assert done.returncode == 0, done.stderr
    names = ["input", "prediction", "groups_stage1", "groups_stage2", "legend"]
    for name in names:
        assert f"wrote {out / name}.png" in done.stdout
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.png" for n in names)
    for name in names[:-1]:
        assert np.asarray(Image.open(out / f"{name}.png")).shape == (H, W, 3), name
    legend = np.asarray(Image.open(out / "legend.png"))
    assert legend.ndim == 3 and legend.shape[0] == 2 * 6 + 3 * 24  # three classes listed
    # Without background every pixel is one of the classes.
    found = done.stdout.split(f"{W}x{H} image; classes found: ")[1].splitlines()[0]
    shares = [float(item.rsplit(" ", 1)[1].rstrip("%")) for item in found.split(", ")]
    assert sum(shares) == pytest.approx(100, abs=0.2)


class _FakeTower:
    """Stands in for a model: soft maps chosen by hand over the token grid it is given.
    Stage 1 puts each quadrant's tokens in one of 4 groups (0 1 / 2 3); stage 2 merges
    the left groups (0, 2) into segment 0 and the right ones (1, 3) into segment 1."""

    config = types.SimpleNamespace(vision=types.SimpleNamespace(patch_size=16))

    def __init__(self, stages):
        self.stages, self.inputs = stages, []

    def encode_image(self, images):
        self.inputs.append(images.shape)
        rows, cols = np.indices((images.shape[1] // 16, images.shape[2] // 16))
        quadrant = (2 * (rows >= rows.shape[0] / 2) + (cols >= cols.shape[1] / 2)).ravel()
        stage1 = np.where(np.arange(4)[:, None] == quadrant[None], 0.7, 0.1)
        stage2 = np.array([[0.9, 0.1, 0.9, 0.1], [0.1, 0.9, 0.1, 0.9]])
        return {"soft_maps": [stage1[None], stage2[None]][:self.stages]}


def test_group_maps_per_stage(image_file):
    image = np.asarray(Image.open(image_file))
    tower = _FakeTower(stages=2)
    stage1, stage2 = demo.stage_group_maps(tower, image)
    # 90x170 at the protocol's scale is 448x846, resized to 448x848 (28x53 patches).
    assert tower.inputs == [(1, 448, 848, 3)]
    rows, cols = np.indices((H, W))
    top, left = rows < H / 2, cols < W / 2
    away = (abs(rows - H / 2) > 3) & (abs(cols - W / 2) > 3)  # off the quadrant borders
    np.testing.assert_array_equal(stage1[away], (2 * ~top + ~left)[away])
    np.testing.assert_array_equal(stage2[away], (~left)[away])

    [only] = demo.stage_group_maps(_FakeTower(stages=1), image)  # a one-stage model
    np.testing.assert_array_equal(only, stage1)


def test_bad_arguments_are_clear(checkpoint, tmp_path, capsys):
    assert demo.main(["demo", "--checkpoint", str(checkpoint), "--image",
                      str(tmp_path / "none.jpg"), "--classes", "cat", "--out", str(tmp_path)]) == 3
    assert "none.jpg: image not found" in capsys.readouterr().err
    with pytest.raises(ValueError, match="names no class"):
        demo.parse_classes(" , ,")
    with pytest.raises(ValueError, match=r"repeats \['cat'\]"):
        demo.parse_classes("cat,dog, cat")
    assert demo.parse_classes(" cat,dog ,  grass ") == ["cat", "dog", "grass"]


def test_nearest_resize_samples_pixel_centres():
    labels = np.array([[0, 1], [2, 3]], np.int32)
    np.testing.assert_array_equal(demo.nearest_resize(labels, (4, 6)),
                                  [[0, 0, 0, 1, 1, 1]] * 2 + [[2, 2, 2, 3, 3, 3]] * 2)
    np.testing.assert_array_equal(demo.nearest_resize(labels, (2, 2)), labels)
    wide = np.arange(6, dtype=np.int32)[None].repeat(3, 0)
    np.testing.assert_array_equal(demo.nearest_resize(wide, (1, 3)), [[1, 3, 5]])
