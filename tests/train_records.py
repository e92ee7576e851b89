"""Training records written the converter's way, for the input pipeline's tests."""
import io
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from input_pipeline import records


def _jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (40, 48, 3), np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG")
    return out.getvalue()


def write_dataset(folder, name, shard_sizes, tagger="pattern", bad=()):
    """Shards of examples "name/s/i" with caption "a dog number s i" and nouns ["dog",
    "n<s>x<i>"]. `bad`: (shard, i) pairs written as a non-Example record (i even) or
    as an Example whose image is not an image (i odd)."""
    folder = Path(folder)
    folder.mkdir(parents=True)
    shards = []
    for s, size in enumerate(shard_sizes):
        file = records.shard_name("train", s, len(shard_sizes))
        with tf.io.TFRecordWriter(str(folder / file)) as writer:
            for i in range(size):
                if (s, i) in bad and i % 2 == 0:
                    writer.write(b"not a tf.train.Example")
                    continue
                image = b"not an image" if (s, i) in bad else _jpeg(1000 * s + i)
                nouns = ["dog", f"n{s}x{i}"] if tagger else []
                writer.write(records.encode_example(f"{name}/{s}/{i}", image,
                                                    f"a dog number {s} {i}", nouns))
        shards.append({"file": file, "num_examples": size,
                       "bytes": (folder / file).stat().st_size})
    records.write_tfds_metadata(folder, name, list(shard_sizes))
    records.write_manifest(folder, {"format": records.FORMAT, "name": name, "shards": shards,
                                    "num_examples": sum(shard_sizes), "nouns": {"tagger": tagger}})
    return folder
