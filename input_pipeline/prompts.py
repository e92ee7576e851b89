"""The K noun prompts of a caption, in the TensorFlow graph.

As in GroupViT's released code: pick min(K, n) of the caption's n nouns without
replacement (by position, so a word the caption repeats can be picked twice), put each
into its own uniformly drawn template, and fill the remaining slots with the caption.
The randomness is stateless, a function of the example's seed only, so a resumed or
repeated pipeline builds the same prompts.
"""
from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from input_pipeline.templates import CLIP_80


def split_templates(templates: Sequence[str]) -> tuple[tf.Tensor, tf.Tensor]:
    """(text before "{}", text after "{}") of each template, as string tensors."""
    bad = [t for t in templates if t.count("{}") != 1]
    if bad or not templates:
        raise ValueError(f"every template needs exactly one '{{}}'; got {bad or 'none'}")
    before, after = zip(*(t.split("{}") for t in templates))
    return tf.constant(before), tf.constant(after)


def make_prompts(caption: tf.Tensor, nouns: tf.Tensor, seed: tf.Tensor, num_prompts: int,
                 templates: Sequence[str] = CLIP_80) -> tf.Tensor:
    """[caption, prompt_1 .. prompt_K]: string [1 + K].

    caption: string scalar; nouns: string [n] (may be empty); seed: int [2], the example's
    stateless seed.
    """
    before, after = split_templates(templates)
    noun_seed, template_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    # A uniform random order of the noun positions: argsort of iid uniforms.
    order = tf.argsort(tf.random.stateless_uniform(tf.shape(nouns), seed=noun_seed))
    picked = tf.gather(nouns, order[:num_prompts])
    chosen = tf.random.stateless_uniform([tf.size(picked)], template_seed, minval=0,
                                         maxval=len(templates), dtype=tf.int32)
    prompts = tf.gather(before, chosen) + picked + tf.gather(after, chosen)
    fill = tf.fill([num_prompts - tf.size(prompts)], caption)
    return tf.concat([caption[None], prompts, fill], axis=0)
