"""The paper's ViT baselines: a plain ViT (no grouping) trains, evaluates pixel-wise and
with k-means segments through the "seg" evaluator, exports, reloads and runs the demo."""

import ml_collections
import numpy as np
import pytest

import groupvit_jax as gv
from groupvit_jax.evaluation import demo
from groupvit_jax.checkpoints import torch_layout
from groupvit_jax.train import trainer
from groupvit_jax.evaluation.predict import SegmentationPredictor
from groupvit_jax.evaluation.resize import Scale
from tests.config_files import ROOT, load_config

SMALL = {"short_side": 64, "long_side_max": 2048, "window": 64, "stride": 32}


@pytest.fixture(scope="module")
def workdir(folder_dataset, tmp_path_factory):
    """One training step of runlocal's model without its grouping stages, then both
    segmentation evaluators."""
    config = load_config(ROOT / "configs/gcc_yfcc_2stage.py", "runlocal")
    config.model.vision.update(depths=(2,), num_group_tokens=(0,), num_output_groups=())
    config.total_steps = 1
    seg = {"kind": "seg", "every_steps": 1, "dataset": "folder", "data_dir": str(folder_dataset),
           "limit": 2, "bg_thresh": 0.5, "scale": SMALL}
    config.evals = ml_collections.ConfigDict({"seg": seg, "seg_kmeans": {**seg, "kmeans": 3}})
    path = tmp_path_factory.mktemp("vit")
    history = trainer.train_and_evaluate(config, path)
    return path, history


@pytest.mark.slow  # ~30 s with the next: training and three window passes to compile
def test_vit_trains_and_evaluates_pixelwise_and_with_kmeans(workdir):
    _, history = workdir
    scores = {key: value for entry in history for key, value in entry.items()}
    assert np.isfinite(scores["loss"])
    for name in ("seg", "seg_kmeans"):
        assert 0 <= scores[f"{name}/mIoU"] <= 100 and 0 <= scores[f"{name}/aAcc"] <= 100


@pytest.mark.slow
def test_vit_exports_reloads_and_draws_the_demo(workdir, tmp_path):
    path, _ = workdir
    from groupvit_jax.train import export as export_cli
    assert export_cli.main(["export", "--workdir", str(path),
                            "--out", str(tmp_path / "export")]) == 0
    model = gv.load_pretrained(tmp_path / "export")
    assert model.config.vision.num_output_groups == ()
    images = np.random.default_rng(0).standard_normal((1, 64, 64, 3)).astype(np.float32)
    out = model.encode_image(images)
    expected = export_cli.read_training_checkpoint(path).encode_image(images)
    np.testing.assert_array_equal(out["segment_embeds"], expected["segment_embeds"])
    assert out["soft_maps"] == [] and out["segment_tokens"].shape == (1, 16, 64)
    with pytest.raises(ValueError, match=r"num_group_tokens=\(0,\): a plain ViT"):
        torch_layout.to_torch(model.variables, model.config, torch_layout.NVLABS)

    # Pixel-wise, a window's segments are its 16 patches; with k-means, 3 clusters.
    windows = np.random.default_rng(1).integers(0, 256, (2, 64, 64, 3)).astype(np.uint8)
    for kmeans, segments in ((0, 16), (3, 3)):
        groups, tables = SegmentationPredictor(model, ["cat", "dog"], kmeans=kmeans,
                                               scale=Scale(**SMALL)).run_windows(windows)
        assert tables.shape == (2, segments, 3) and set(np.unique(groups)) <= set(range(segments))
    image = np.random.default_rng(1).integers(0, 256, (48, 80, 3)).astype(np.uint8)
    written, labels = demo.run(model, image, ["cat", "dog"], tmp_path / "demo",
                               scale=Scale(**SMALL))
    assert sorted(written) == ["input", "legend", "prediction"] and labels.shape == (48, 80)
