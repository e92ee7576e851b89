"""Held-out image-caption pairs from a converted dataset, for the retrieval evaluator."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from input_pipeline import augment, records

from input_pipeline import tokenize_ops


def held_out_pairs(folder: str, num_examples: int, image_size: int, tokenizer: str,
                   context_length: int) -> dict[str, np.ndarray]:
    """The first `num_examples` records of `folder`, in shard order: images centre-cropped
    and normalised [N, S, S, 3], captions tokenised [N, 1, L]."""
    manifest = records.read_manifest(folder)
    if manifest["num_examples"] < num_examples:
        raise ValueError(f"{folder} holds {manifest['num_examples']} examples; the evaluator "
                         f"asks for {num_examples}.")
    files = [s["path"] for s in manifest["shards"]]
    texts = tokenize_ops.make_tokenizer(tokenizer, context_length)

    def prepare(serialized):
        example = records.parse_example(serialized)
        return augment.center_crop_image(example["image"], image_size), example["caption"]

    ds = tf.data.TFRecordDataset(files).take(num_examples).map(prepare).batch(num_examples)
    images, captions = next(iter(ds))
    return {"images": images.numpy(), "tokens": texts(captions[:, None]).numpy()}
