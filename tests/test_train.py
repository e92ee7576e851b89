"""Configs, the recipe's schedule, and the train binary end to end on CPU."""
import ast
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

import groupvit_jax as gv
from groupvit_jax.evaluation import registry
from groupvit_jax.train import optim
from groupvit_jax.train import trainer
from groupvit_jax.train import recipe
from groupvit_jax.models.config import GroupViTConfig

from tests.config_files import CONFIGS, ROOT, load_config


def _variants(path):
    """A config's own VARIANTS if it declares them, else the shared recipe's."""
    names = re.findall(r"^VARIANTS = (\(.*\))$", path.read_text(), re.M)
    return ast.literal_eval(names[0]) if names else recipe.VARIANTS


@pytest.mark.parametrize("path, arg", [(p, a) for p in CONFIGS for a in _variants(p)],
                         ids=[f"{p.stem}:{a}" for p in CONFIGS for a in _variants(p)])
def test_every_config_and_variant_resolves(path, arg):
    config = load_config(path, arg)
    model = GroupViTConfig.from_dict(config.model.to_dict())
    assert model.multi_label_scale == (config.data.num_prompts > 0)
    assert recipe.total_steps(config) > recipe.warmup_steps(config) >= 0
    assert path.read_text().count("python -m groupvit_jax.train") >= 1  # docstring says how


def test_unknown_variant_is_an_error():
    with pytest.raises(ValueError, match="Unknown config variant 'gpu99'"):
        load_config(CONFIGS[0], "gpu99")


def _timm_cosine(t, base, warm, low, warmup, total):
    """timm CosineLRScheduler, warmup_prefix=False, one cycle (written independently)."""
    if t < warmup:
        return warm + t * (base - warm) / warmup
    return low + 0.5 * (base - low) * (1 + math.cos(math.pi * t / total))


def test_schedule_reproduces_the_released_lr_for_gcc_yfcc():
    config = load_config(ROOT / "configs/gcc_yfcc_2stage.py")
    total, warmup = recipe.total_steps(config), recipe.warmup_steps(config)
    assert (recipe.steps_per_epoch(config), warmup, total) == (6997, 13994, 209910)
    _, schedule = optim.make_optimizer(config.optim, 4096, total, warmup)
    # The released loop updates the lr AFTER each step: step t trains with f(t - 1).
    for step in (0, 1, 6998, 13994, 13995, 104956, total - 1):
        expected = _timm_cosine(max(step - 1, 0), 1.6e-3, 4e-6, 4e-5, warmup, total)
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-5), step
    assert float(schedule(0)) == pytest.approx(4e-6)
    # Linear scaling with the global batch.
    _, half = optim.make_optimizer(config.optim, 2048, total, warmup)
    assert float(half(104956)) == pytest.approx(0.5 * float(schedule(104956)), rel=1e-6)


def test_decay_mask_follows_the_released_rule():
    params = {"dense": {"kernel": np.zeros((2, 2)), "bias": np.zeros(2)},
              "norm": {"scale": np.zeros(2)}, "pos_embed": np.zeros((1, 4, 2)),
              "group_tokens": np.zeros((1, 3, 2)), "logit_scale": np.zeros(())}
    mask = optim.decay_mask(params)
    assert mask == {"dense": {"kernel": True, "bias": False}, "norm": {"scale": False},
                    "pos_embed": True, "group_tokens": True, "logit_scale": True}
    extra = optim.decay_mask(params, exclude_extra=True)
    assert not extra["pos_embed"] and not extra["group_tokens"] and not extra["logit_scale"]
    assert extra["dense"]["kernel"]


@pytest.mark.parametrize("scale", [3.0, 0.1], ids=["clipped", "within_the_norm"])
def test_global_norm_clipping_matches_pytorch(scale):
    import optax
    import torch
    rng = np.random.default_rng(0)
    grads = {"a": rng.normal(size=(64, 32)).astype(np.float32) * scale,
             "b": rng.normal(size=(7,)).astype(np.float32) * scale}
    clip = optim.clip_by_global_norm(5.0)
    ours, _ = clip.update(jax.tree.map(jax.numpy.asarray, grads), clip.init(grads))
    tensors = {k: torch.nn.Parameter(torch.zeros(v.shape)) for k, v in grads.items()}
    for k, t in tensors.items():
        t.grad = torch.tensor(grads[k])
    norm = torch.nn.utils.clip_grad_norm_(list(tensors.values()), 5.0)
    if float(norm) <= 5.0:  # nothing to clip: the gradients pass unchanged
        for k in grads:
            np.testing.assert_array_equal(ours[k], grads[k])
    for k in grads:  # PyTorch's 1e-6 added to the norm is the only difference
        np.testing.assert_allclose(ours[k], tensors[k].grad.numpy(), rtol=1e-6, atol=0)
    reference, _ = optax.clip_by_global_norm(5.0).update(grads, optax.EmptyState())
    for k in grads:  # optax divides then multiplies: a rounding apart
        np.testing.assert_allclose(ours[k], reference[k], rtol=3e-7, atol=0)
    assert float(optax.tree.norm(ours)) == pytest.approx(min(float(norm), 5.0), rel=1e-6)


def test_unknown_evaluator_kind_is_an_error():
    config = load_config(ROOT / "configs/gcc_yfcc_2stage.py", "runlocal")
    config.evals.retrieval.kind = "retreival"
    with pytest.raises(ValueError, match="evals.retrieval.kind='retreival' is not a known evaluator"):
        registry.create(config.evals, config)


def test_non_finite_loss_names_the_step_and_term():
    with pytest.raises(trainer.NonFiniteLossError, match="step 7: loss=nan, loss_multi_label=nan"):
        trainer._check_finite({"loss": float("nan"), "loss_image_text": 1.0,
                             "loss_multi_label": float("nan")}, 7)


@pytest.mark.slow
def test_runlocal_trains_to_a_decreasing_loss(tmp_path):
    config = load_config(ROOT / "configs/gcc_yfcc_2stage.py", "runlocal")
    config.log_every_steps = 1
    history = trainer.train_and_evaluate(config, tmp_path)
    losses = [h["loss"] for h in history if "loss" in h]
    assert len(losses) == 30 and np.all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    assert {"loss_image_text", "loss_multi_label", "lr", "grad_norm", "logit_scale",
            "multi_label_logit_scale", "pos_similarity", "images_per_sec"} <= set(history[-2])
    # The periodic evaluator ran at its interval and at the end.
    retrieval = [h for h in history if "retrieval/image_to_text_top1" in h]
    assert [h["step"] for h in retrieval] == [15, 30]
    assert all(0.0 <= h["retrieval/text_to_image_top1"] <= 1.0 for h in retrieval)
    assert (tmp_path / "config.json").exists()
    assert 30 in ocp.CheckpointManager(tmp_path / "checkpoints").all_steps()
    # Rerunning a finished workdir resumes at the end and trains nothing more.
    assert trainer.train_and_evaluate(config, tmp_path) == []

    # The eval-only export loads through the public API and gives the trained model.
    from groupvit_jax.train import export as export_cli
    args = ["export", "--workdir", str(tmp_path), "--out", str(tmp_path / "export")]
    assert export_cli.main(args) == 0
    trained = export_cli.read_training_checkpoint(tmp_path)
    exported = gv.load_pretrained(tmp_path / "export")
    tokens = exported.tokenize(["a photo of a cat."])
    np.testing.assert_array_equal(exported.encode_text(tokens), trained.encode_text(tokens))
    assert export_cli.main(args) == 3  # the export exists: never overwritten unasked
    # Importing the CLI module must not break the gv.export function.
    gv.export(exported, tmp_path / "export2")


def _train_cmd(workdir, *extra):
    return [sys.executable, "-m", "groupvit_jax.train",
            f"--config={ROOT / 'configs/gcc_yfcc_2stage.py'}:runlocal", f"--workdir={workdir}",
            "--config.log_every_steps=1", "--config.checkpoint_every_steps=1000", *extra]


def _final_params(workdir):
    mgr = ocp.CheckpointManager(Path(workdir) / "checkpoints")
    restored = mgr.restore(mgr.latest_step())
    return mgr.latest_step(), restored["params"]


@pytest.mark.slow
def test_sigterm_then_resume_equals_an_uninterrupted_run(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    straight = subprocess.run(_train_cmd(tmp_path / "straight"), capture_output=True, text=True,
                              env=env, timeout=600)
    assert straight.returncode == 0, straight.stderr[-2000:]

    proc = subprocess.Popen(_train_cmd(tmp_path / "preempted"), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    for line in proc.stdout:  # preempt as soon as the first step has logged
        if "loss=" in line:
            break
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=300)
    assert proc.returncode == 0
    stopped_at = ocp.CheckpointManager(tmp_path / "preempted" / "checkpoints").latest_step()
    assert 0 < stopped_at < 30  # a restorable checkpoint from mid-run

    resumed = subprocess.run(_train_cmd(tmp_path / "preempted"), capture_output=True, text=True,
                             env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    step_a, params_a = _final_params(tmp_path / "straight")
    step_b, params_b = _final_params(tmp_path / "preempted")
    assert step_a == step_b == 30
    jax.tree.map(np.testing.assert_array_equal, params_a, params_b)  # bit for bit


def test_cli_rejects_a_misspelled_override(tmp_path):
    out = subprocess.run(_train_cmd(tmp_path, "--config.optim.base_lrr=1.0"), capture_output=True,
                         text=True, timeout=300)
    assert out.returncode != 0
    assert "base_lrr" in out.stderr


def test_trains_on_a_prepared_tfds_dataset(tmp_path):
    """Two steps on `tfds:NAME`, read where TFDS prepared it, with no conversion."""
    from ml_collections import ConfigDict

    from tests.tfds_data import CAPTIONS, write_captions

    write_captions(tmp_path / "tfds", 8)
    config = load_config(ROOT / "configs/gcc_yfcc_2stage.py", "runlocal")
    config.data.source = "records"
    config.data.data_dir = str(tmp_path / "tfds")
    config.data.datasets = {f"tfds:{CAPTIONS}": 1.0}
    config.data.tfds_fields.caption = "captions/text"
    config.data.global_batch = 4
    config.data.shuffle_buffer = 4
    config.data.num_threads = 2
    config.total_steps = 2
    config.log_every_steps = 1
    config.evals = ConfigDict({})
    history = trainer.train_and_evaluate(config, tmp_path / "work")
    losses = [h["loss"] for h in history if "loss" in h]
    assert len(losses) == 2 and np.all(np.isfinite(losses))
    assert history[-1]["data/skipped_examples"] == 0
    assert ocp.CheckpointManager(tmp_path / "work" / "checkpoints").latest_step() == 2
