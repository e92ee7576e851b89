"""Trimmed text: the tower runs at bucket lengths, with the results of all 77 tokens."""
import dataclasses

import jax
import numpy as np
import pytest

import groupvit_jax as gv
from groupvit_jax.evaluation.classification import text_classifier
from groupvit_jax.models.model import GroupViT, l2_normalize
from groupvit_jax.models.text import trimmed_length
from groupvit_jax.train import sharding
from groupvit_jax.train import step as train_step
from tests.tiny import tiny_config

B, K, L = 8, 3, 77
EOT = 49407


def _config():
    """The tiny model at CLIP's vocabulary and context, so trimming has room to act."""
    config = tiny_config()
    return config.replace(text=dataclasses.replace(config.text, vocab_size=49408,
                                                   context_length=L))


def _tokens(seed, shape, longest):
    """Random ids, each row ending with EOT somewhere before `longest`, zeros after."""
    rng = np.random.default_rng(seed)
    rows = np.zeros((int(np.prod(shape)), L), np.int32)
    for row in rows:
        n = rng.integers(1, longest)
        row[:n] = rng.integers(1, EOT - 1, n)
        row[n] = EOT
    return rows.reshape(*shape, L)


def test_trimmed_length_is_16_when_every_row_ends_by_then_else_the_context():
    tokens = np.zeros((3, L), np.int32)
    tokens[0, 5] = tokens[1, 2] = tokens[2, 15] = EOT   # the last EOT at 15: 16 tokens
    assert trimmed_length(tokens, L) == 16
    tokens[1, 2], tokens[1, 16] = 7, EOT               # 17 tokens needed
    assert trimmed_length(tokens, L) == 77
    assert trimmed_length(tokens[:, :40], L) == 40     # never longer than the tokens
    assert trimmed_length(tokens[:, :10], L) == 10
    assert trimmed_length(np.zeros((2, 0, L), np.int32), L) == 16


def test_host_max_on_one_host_is_the_values():
    assert sharding.host_max((16, 32)) == (16, 32)


@pytest.fixture(scope="module")
def setup():
    config = _config()
    module = GroupViT(config)
    images = np.random.default_rng(0).standard_normal((B, 32, 32, 3)).astype(np.float32)
    tokens = np.concatenate([_tokens(1, (B, 1), 30), _tokens(2, (B, K), 9)], axis=1)
    variables = jax.jit(module.init)(jax.random.key(0), images[:2], tokens[:2, 0])
    return module, variables, {"images": images, "tokens": tokens}


def _untrimmed_loss(module, params, batch_stats, batch, rng):
    """The loss as computed before trimming: one text-tower call over all B x (1+K) rows
    at all 77 tokens (the model's __call__), returning (loss, (metrics, batch_stats))."""
    gumbel, droppath = jax.random.split(rng)
    out, updates = module.apply({"params": params, "batch_stats": batch_stats}, batch["images"],
                                batch["tokens"].reshape(B * (1 + K), L), train=True,
                                rngs={"gumbel": gumbel, "droppath": droppath},
                                mutable=["batch_stats"])
    text = out["text_embeds"].reshape(B, 1 + K, -1)
    temperatures = module.apply({"params": params}, method="temperatures")
    loss, metrics = train_step.contrastive_losses(out["image_embeds"], text, temperatures, 1.0)
    return loss, (metrics, updates["batch_stats"])


def _losses_and_grads(setup, text_lengths):
    """(untrimmed, trimmed) ((loss, (metrics, batch_stats)), grads) of one batch."""
    module, variables, batch = setup
    args = (variables["params"], variables["batch_stats"], batch, jax.random.key(5))
    full = jax.jit(jax.value_and_grad(
        lambda p, s, b, r: _untrimmed_loss(module, p, s, b, r), has_aux=True))
    trimmed = jax.jit(jax.value_and_grad(
        lambda p, s, b, r: train_step.compute_losses(module, p, s, b, r, 1.0,
                                                     text_lengths=text_lengths), has_aux=True))
    return full(*args), trimmed(*args)


def _worst_relative(a, b):
    """max |a - b| over all leaves, relative to max |a| (leaves whose true value is 0,
    such as a bias before BatchNorm, hold rounding noise only)."""
    flat = lambda t: np.concatenate([np.ravel(x) for x in jax.tree.leaves(t)])
    return float(np.max(np.abs(flat(a) - flat(b))) / np.max(np.abs(flat(a))))


@pytest.mark.parametrize("longest_caption", [16, 40])
def test_trimmed_train_loss_is_bit_identical_to_all_tokens(setup, longest_caption):
    """Captions ending by token 16 run at 16 tokens, longer ones at 77; prompts at 16.
    The loss, the metrics and BatchNorm's statistics (captions and prompts together, in
    the untrimmed order) equal the 77-token ones bit for bit. Gradients do not: weight
    gradients sum over fewer token rows (both sets at 16, one tower call) or add the
    caption and prompt tower calls' parts in another order (captions at 77); measured
    3.5e-8 and 3.3e-8 of the largest entry."""
    module, variables, batch = setup
    captions = _tokens(3, (B, 1), longest_caption)
    batch = {**batch, "tokens": np.concatenate([captions, batch["tokens"][:, 1:]], axis=1)}
    lengths = train_step.text_lengths(batch["tokens"], L)
    assert lengths == ((16 if longest_caption <= 16 else L), 16)
    ((loss, (metrics, stats)), grads), ((loss_t, (metrics_t, stats_t)), grads_t) = (
        _losses_and_grads((module, variables, batch), lengths))
    np.testing.assert_array_equal(loss_t, loss)
    for key in metrics:
        np.testing.assert_array_equal(metrics_t[key], metrics[key], err_msg=key)
    jax.tree.map(np.testing.assert_array_equal, stats_t, stats)
    print("relative gradient difference", _worst_relative(grads, grads_t))
    assert _worst_relative(grads, grads_t) < 1e-6


def test_trimmed_prompts_give_bit_identical_class_embeddings():
    config = _config()
    variables = jax.jit(GroupViT(config).init)(jax.random.key(1), np.zeros((1, 32, 32, 3)),
                                               np.zeros((1, L), np.int32))
    model = gv.PretrainedGroupViT(config, variables)
    names = ["cat", "dog", "traffic light", "potted plant", "a very long compound class name"]
    templates = ("a photo of a {}.", "itap of the {}.")
    classifier = text_classifier(model, names, templates)
    tokens = model.tokenize([t.format(n) for n in names for t in templates])
    assert trimmed_length(tokens, L) == 16
    full = np.asarray(model.encode_text(tokens)).reshape(len(names), len(templates), -1)
    np.testing.assert_array_equal(classifier, np.asarray(l2_normalize(full.mean(axis=1))))
