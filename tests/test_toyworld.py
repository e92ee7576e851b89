"""The toy world: scenes, captions, the two dataset layouts, and the main job end to end."""
import json
import re

import numpy as np
import pytest

from config_files import ROOT, load_config
from groupvit_jax.toyworld import captions, generate, scenes


def test_scene_is_a_pure_function_of_seed_and_index():
    a, b = scenes.make_scene(3, 17), scenes.make_scene(3, 17)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.image, scenes.make_scene(4, 17).image)


@pytest.mark.parametrize("index", range(20))
def test_scene_labels_match_its_objects(index):
    scene = scenes.make_scene(0, index, size=64)
    assert scene.image.shape == (64, 64, 3) and scene.image.dtype == np.uint8
    present = sorted(set(np.unique(scene.labels)) - {0})
    named = sorted(scenes.CLASSES.index(o.name) + 1 for o in scene.objects)
    assert present == named and len(set(named)) == len(named)
    for obj in scene.objects:
        area = np.mean(scene.labels == scenes.CLASSES.index(obj.name) + 1)
        assert area == pytest.approx(obj.area) and area >= 0.04


def test_background_pixels_are_unlike_every_object_texture():
    # The smooth backdrop has no pixel-to-pixel jumps; every texture has many.
    scene = next(s for s in (scenes.make_scene(0, i) for i in range(50)) if len(s.objects) == 1)
    jumps = np.abs(np.diff(scene.image.astype(int), axis=1)).sum(-1) > 90
    inside = (scene.labels[:, 1:] > 0) & (scene.labels[:, :-1] > 0)
    outside = (scene.labels[:, 1:] == 0) & (scene.labels[:, :-1] == 0)
    assert jumps[inside].mean() > 0.1 and jumps[outside].mean() == 0.0


@pytest.mark.parametrize("index", range(30))
def test_caption_names_every_object_once_and_no_colour(index):
    scene = scenes.make_scene(0, index)
    text = captions.caption(scene, np.random.default_rng(index))
    words = re.findall(r"[a-z]+", text)
    for name in scenes.CLASSES:
        expected = int(any(o.name == name for o in scene.objects))
        assert words.count(name) == expected, (text, name)
    colours = {"red", "green", "blue", "white", "black", "yellow", "orange", "brown", "cream"}
    assert not colours & set(words), text


def test_generated_datasets_are_readable_and_disjoint(tmp_path):
    from groupvit_jax.evaluation import datasets
    from input_pipeline import records

    manifest = generate.write_train(tmp_path / "train", 40, seed=5, size=64, workers=1)
    assert manifest["num_examples"] == 40 and manifest["nouns"]["tagger"] == "pattern"
    folder = generate.write_eval(tmp_path / "eval", 6, seed=5, size=64, workers=1)
    data = datasets.folder(folder)
    assert data.with_background and data.query_names == scenes.CLASSES and len(data) == 6
    image, label = data.read(2)
    held_out = scenes.make_scene(5 + generate.EVAL_OFFSET, 2)
    np.testing.assert_array_equal(image, held_out.image)
    np.testing.assert_array_equal(label, held_out.labels)
    # Training scenes come from another world: none equals a held-out one.
    train_images = {scenes.make_scene(5, i).image.tobytes() for i in range(40)}
    assert not any(data.read(i)[0].tobytes() in train_images for i in range(6))
    # A rerun keeps what is there.
    (tmp_path / "train" / "marker").write_text("kept")
    assert generate.write_train(tmp_path / "train", 40, seed=5)["num_examples"] == 40
    assert (tmp_path / "train" / "marker").read_text() == "kept"
    assert records.read_manifest(tmp_path / "train")["name"] == "toyworld"


@pytest.mark.slow
def test_main_job_end_to_end_shortened(tmp_path):
    """The README's main command on a shortened schedule: 3,000 scenes, 200 steps (about
    3 minutes). Image-level zero-shot top-1 measured 72% on the 50 held-out scenes
    (chance: the scene's share of the 8 classes, about 23%); 90.6% in a 200-step
    exploratory run. mIoU does not beat the all-background baseline yet at this length
    (measured 6.6 vs 6.6), so only the chain and the early signal are asserted."""
    from groupvit_jax.toyworld import main

    config = load_config(ROOT / "configs" / "toyworld.py")
    config.data.data_dir = str(tmp_path / "data")
    config.toyworld.train_scenes, config.toyworld.eval_scenes = 3000, 50
    config.toyworld.demo_scenes = 1
    config.total_steps = 200
    config.evals.seg.every_steps, config.evals.seg.limit = 200, 50
    results = main.run(config, tmp_path / "run")

    assert results["scene_classification"]["top1"] >= 50.0
    assert results["scene_classification"]["num_images"] == 50
    seg = results["segmentation"]
    assert seg["num_images"] == 50 and 0.0 <= seg["mIoU"] <= 100.0
    assert [row["step"] for row in results["curve"]] == [200]
    assert json.loads((tmp_path / "run" / "results.json").read_text())["train_steps"] == 200
    assert (tmp_path / "run" / "export" / "groupvit_jax.json").is_file()
    for name in ("input", "prediction", "groups_stage1", "groups_stage2", "legend"):
        assert (tmp_path / "run" / "demo" / "scene0" / f"{name}.png").is_file()
