"""An explicit synthetic source (`data.source = "synthetic"`) for the train loop.

Each example belongs to one of `num_classes` concepts: its image is that concept's
fixed random pattern plus noise and its caption and prompts are that concept's
fixed token ids, so the contrastive losses can fall. The global batch of a step is
a pure function of (seed, step); each host takes its slice. A resumed run, or the
same run on another host count, therefore sees the same examples.
"""
from __future__ import annotations

import functools

import jax
import numpy as np

SOT, EOT = 49406, 49407


@functools.lru_cache(maxsize=8)
def _concepts(seed, num_classes, image_size, context_length, vocab_size):
    rng = np.random.default_rng([seed, 12345])
    patterns = rng.standard_normal((num_classes, image_size, image_size, 3)).astype(np.float32)
    words = rng.integers(1, min(vocab_size, SOT) - 1, (num_classes, 4))
    return patterns, words


def synthetic_batch(step: int, global_batch: int, image_size: int, num_prompts: int,
                    context_length: int, vocab_size: int, seed: int = 0,
                    num_classes: int = 32) -> dict[str, np.ndarray]:
    """This host's slice of the global batch of `step`: images [b, S, S, 3] float32,
    tokens [b, 1 + num_prompts, context_length] int32."""
    patterns, words = _concepts(seed, num_classes, image_size, context_length, vocab_size)
    local = global_batch // jax.process_count()
    rows = slice(jax.process_index() * local, (jax.process_index() + 1) * local)
    rng = np.random.default_rng([seed, step])
    classes = rng.integers(0, num_classes, global_batch)[rows]
    noise = rng.standard_normal((global_batch, image_size, image_size, 3), np.float32)[rows]
    images = patterns[classes] + 0.5 * noise
    # Caption: SOT w0 w1 w2 w3 EOT; prompt k: SOT w_k EOT (distinct words per slot).
    tokens = np.zeros((local, 1 + num_prompts, context_length), np.int32)
    tokens[:, :, 0] = min(SOT, vocab_size - 2)
    tokens[:, 0, 1:5] = words[classes]
    tokens[:, 0, 5] = min(EOT, vocab_size - 1)
    for k in range(num_prompts):
        tokens[:, 1 + k, 1] = words[classes, k % words.shape[1]]
        tokens[:, 1 + k, 2] = min(EOT, vocab_size - 1)
    return {"images": images, "tokens": tokens}
