"""The demo binary end to end on a tiny exported model and a non-square image."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import groupvit_jax as gv
from groupvit_jax import demo, visualize
from tiny_pretrained import tiny_pretrained

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
        [sys.executable, "-m", "groupvit_jax.demo", "--checkpoint", str(checkpoint),
         "--image", str(image_file), "--classes", "cat, dog,grass", "--out", str(out),
         "--bg_thresh", "0"], capture_output=True, text=True, env=env, cwd=REPO,
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
    # Threshold 0: no pixel is background, so some class is found and named.
    assert f"{W}x{H} image; classes found: " in done.stdout
    assert "classes found: none" not in done.stdout


def test_group_maps_per_stage(model, image_file):
    image = np.asarray(Image.open(image_file))
    stage1, stage2 = demo.stage_group_maps(model, image)
    assert stage1.shape == stage2.shape == (H, W)
    assert stage1.max() < 8 and stage2.max() < 4  # tiny_config: 8 then 4 groups
    assert len(np.unique(stage1)) > 1
    one_stage = tiny_pretrained(seed=1, patch_size=16, depths=(1, 1),
                                num_group_tokens=(8, 0), num_output_groups=(4,))
    [only] = demo.stage_group_maps(one_stage, image)
    assert only.shape == (H, W) and only.max() < 4


def test_run_without_background_labels_every_pixel(model, image_file, tmp_path):
    image = np.asarray(Image.open(image_file))
    written, labels = demo.run(model, image, ["sky", "road"], tmp_path, with_background=False)
    assert labels.shape == (H, W) and set(np.unique(labels)) <= {0, 1}
    ids = visualize.class_ids(labels, 2, with_background=False)
    assert (ids >= 0).all()
    assert set(written) == {"input", "prediction", "groups_stage1", "groups_stage2", "legend"}


def test_bad_arguments_are_clear(checkpoint, tmp_path, capsys):
    assert demo.main(["--checkpoint", str(checkpoint), "--image", str(tmp_path / "none.jpg"),
                      "--classes", "cat", "--out", str(tmp_path)]) == 2
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
