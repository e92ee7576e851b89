"""The train step's toy-world additions: off by default, each adds its named term."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict

from groupvit_jax.models.model import GroupViT
from groupvit_jax.train import step as train_step
from groupvit_jax.train.extra_losses import ExtraLosses
from input_pipeline.clip_tokenizer import get_tokenizer
from tests.tiny import tiny_config


@pytest.fixture(scope="module")
def setup():
    config = tiny_config()
    module = GroupViT(config)
    images = jax.random.normal(jax.random.key(0), (8, 32, 32, 3))
    tokens = jax.random.randint(jax.random.key(1), (8, 3, 16), 1, 100)
    variables = module.init(jax.random.key(2), images, tokens.reshape(24, 16))
    return module, variables, {"images": images, "tokens": tokens}


def _losses(setup, **weights):
    module, variables, batch = setup
    total, (metrics, _) = train_step.compute_losses(
        module, variables["params"], variables["batch_stats"], batch, jax.random.key(3), 1.0,
        ExtraLosses(**weights))
    return float(total), {k: float(v) for k, v in metrics.items()}


def test_each_addition_adds_its_weighted_term(setup):
    base, m0 = _losses(setup)
    assert not {"loss_segment_label", "loss_group_balance", "loss_mosaic"} & set(m0)
    for key, metric in (("segment_label_weight", "loss_segment_label"),
                        ("group_balance_weight", "loss_group_balance"),
                        ("mosaic_weight", "loss_mosaic")):
        total, m = _losses(setup, **{key: 0.5})
        assert np.isfinite(m[metric]) and m[metric] > 0, key
        assert total == pytest.approx(base + 0.5 * m[metric], rel=1e-5), key
        assert m["loss"] == pytest.approx(total, rel=1e-6)
    total, m = _losses(setup, group_balance_weight=0.5, group_balance_kind="infomax")
    assert 0.0 <= m["loss_group_balance"] <= 1.0
    assert total == pytest.approx(base + 0.5 * m["loss_group_balance"], rel=1e-5)
    with pytest.raises(ValueError, match="group_balance_kind"):
        ExtraLosses(group_balance_weight=0.5, group_balance_kind="entropy")
    _, m = _losses(setup, group_balance_weight=1.0)
    assert 0.5 < m["loss_group_balance"] <= 8.0   # about 1 near uniform; G = 8 for one group


def test_additions_refuse_gradient_accumulation():
    with pytest.raises(NotImplementedError):
        train_step.make_train_step(tiny_config(), None, None, None, None, accum_steps=2,
                                   extra=ExtraLosses(mosaic_weight=1.0))


def test_extra_losses_from_the_config_turn_nouns_into_token_ids():
    extra = ExtraLosses.from_config(ConfigDict(dict(segment_noun_weight=1.0,
                                                    segment_noun_words=("zebra", "sky"))),
                                    "clip", 16)
    ids = get_tokenizer(16)(["zebra", "sky"])[:, 1]
    assert extra.noun_token_ids == tuple(int(i) for i in ids) and extra.active
    assert not ExtraLosses(image_text_weight=0.1).active
    with pytest.raises(ValueError, match="segment_noun_scope"):
        ExtraLosses(segment_noun_scope="everything")
    with pytest.raises(ValueError, match="needs data.tokenizer='clip'"):
        ExtraLosses.from_config(ConfigDict(dict(segment_noun_words=("zebra",))),
                                "sentencepiece:x.model", 16)
