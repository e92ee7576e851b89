"""A tiny GroupViT with weights, behind the inference API, for end-to-end tests."""
import dataclasses

import jax
import numpy as np

import groupvit_jax as gv
from tiny import tiny_config


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
