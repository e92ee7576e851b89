"""A tiny GroupViT with weights, behind the inference API, for end-to-end tests."""
import dataclasses

import jax
import numpy as np

import groupvit_jax as gv
from groupvit_jax.checkpoints import pretrained
from tests.tiny import tiny_config


def tiny_pretrained(seed: int = 0, **vision_overrides) -> gv.PretrainedGroupViT:
    """tiny_config() with CLIP's vocabulary (so `model.tokenize` ids are all in range) and
    any vision fields replaced, e.g. depths=(1, 1) for a one-stage model."""
    config = tiny_config()
    config = config.replace(text=dataclasses.replace(config.text, vocab_size=49408),
                            vision=dataclasses.replace(config.vision, **vision_overrides))
    size = config.vision.image_size
    variables = jax.jit(gv.GroupViT(config).init)(
        jax.random.key(seed), np.zeros((1, size, size, 3), np.float32),
        np.zeros((1, config.text.context_length), np.int32))
    return gv.PretrainedGroupViT(config, variables)


def random_model(seed: int = 0) -> pretrained.PretrainedGroupViT:
    """A tiny GroupViT (16-pixel patches, the CLIP vocabulary) with random weights, built
    from the variables' shapes without compiling an init: norms 1/0, the rest N(0, .02).
    Its assignment queries are scaled up and its temperature set to 100 so groups,
    classes and background all show up."""
    cfg = tiny_config()
    cfg = cfg.replace(vision=dataclasses.replace(cfg.vision, patch_size=16),
                      text=dataclasses.replace(cfg.text, vocab_size=49408))
    rng = np.random.default_rng(seed)

    def init(path, spec):
        name = jax.tree_util.keystr(path)
        if name.endswith(("['scale']", "['var']")):
            return np.ones(spec.shape, spec.dtype)
        if name.endswith(("['bias']", "['mean']")):
            return np.zeros(spec.shape, spec.dtype)
        scale = 0.6 if "['assign']['q']" in name else 0.02
        return rng.normal(0, scale, spec.shape).astype(spec.dtype)
    variables = jax.tree_util.tree_map_with_path(init, pretrained.abstract_variables(cfg))
    variables["params"]["logit_scale"] = np.float32(np.log(100.0))
    return pretrained.PretrainedGroupViT(cfg, variables)
