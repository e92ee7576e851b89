"""The toy world: scenes, captions, the two dataset layouts, and the main job end to end."""
import json
import re

import numpy as np
import pytest

from tests.config_files import ROOT, load_config
from experiments.toyworld.world import captions
from experiments.toyworld.world import generate
from experiments.toyworld.world import scenes


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


def test_captions_name_only_their_own_backdrop():
    named = 0
    for index in range(60):
        scene = scenes.make_scene(0, index)
        words = set(re.findall(r"[a-z]+", captions.caption(scene, np.random.default_rng(index))))
        others = set(scenes.BACKDROPS) - {scene.backdrop}
        assert not words & others
        named += scene.backdrop in words
    assert 30 <= named <= 55  # about 70% of captions name it


def test_a_data_folder_of_another_world_is_refused_not_overwritten(tmp_path):
    from experiments.toyworld.main import write_world
    config = load_config(ROOT / "experiments/toyworld/config.py")
    config.data.data_dir = str(tmp_path)
    (tmp_path / "world.json").write_text(json.dumps({"world": 1}))
    with pytest.raises(ValueError, match="another toy world"):
        write_world(config)
    (tmp_path / "world.json").unlink()
    (tmp_path / "mine.txt").write_text("kept")
    with pytest.raises(ValueError, match="no world.json"):
        write_world(config)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]


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
    # Data an earlier version wrote (before records were a TFDS dataset) is migrated.
    manifest_file = tmp_path / "train" / records.MANIFEST
    old = {**json.loads(manifest_file.read_text()), "format": records.OLD_FORMAT}
    manifest_file.write_text(json.dumps(old))
    (tmp_path / "train" / "dataset_info.json").unlink()
    assert generate.write_train(tmp_path / "train", 40, seed=5)["format"] == records.FORMAT
    assert (tmp_path / "train" / "dataset_info.json").is_file()


# The shortened chain below is the ablations' "groupvit" run (experiments/toyworld/
# ablations.py: 300 steps, the same world). Measured (2026-11-26) over seeds 0, 1, 2:
# mIoU 11.6, 13.7, 11.6 against 6.4 for all-background (margins 5.2 to 7.3), image-level
# top-1 74.5%, 55.0%, 56.5% (a random class is in the scene about 25% of the time); and
# this test itself, whose XLA flags (conftest.py) change the numerics like a fourth
# seed: mIoU 8.4 (margin 2.0), top-1 80.5%. The thresholds sit below the lowest of each.
SHORT_STEPS = 300
MIN_MIOU_OVER_BACKGROUND = 1.0
MIN_TOP1 = 40.0


@pytest.mark.slow
def test_main_job_end_to_end_shortened(tmp_path):
    """The README's main command on the ablations' schedule (7-9 minutes): the model
    must beat the all-background baseline by the margin measured runs support."""
    from experiments.toyworld import main

    config = load_config(ROOT / "experiments/toyworld/config.py")
    config.data.data_dir = str(tmp_path / "data")
    config.toyworld.demo_scenes = 1
    config.total_steps = SHORT_STEPS
    results = main.run(config, tmp_path / "run")

    seg, cls = results["segmentation"], results["scene_classification"]
    assert seg["num_images"] == cls["num_images"] == 200
    assert seg["mIoU"] >= results["all_background"]["mIoU"] + MIN_MIOU_OVER_BACKGROUND
    assert cls["top1"] >= MIN_TOP1
    assert [row["step"] for row in results["curve"]] == [SHORT_STEPS]
    assert json.loads((tmp_path / "run" / "results.json").read_text())["train_steps"] == SHORT_STEPS
    assert (tmp_path / "run" / "export" / "groupvit_jax.json").is_file()
    for name in ("input", "prediction", "groups_stage1", "groups_stage2", "legend"):
        assert (tmp_path / "run" / "demo" / "scene0" / f"{name}.png").is_file()
