"""The on-disk format every dataset is converted to, and its manifest.

A dataset is a folder of TFRecord shards of `tf.train.Example`s plus `manifest.json`:

    id        bytes   stable example id: "<source shard or file>/<key>"
    image     bytes   the encoded image (JPEG or PNG) as read, or re-encoded JPEG when resized
    caption   bytes   UTF-8 caption, whitespace-stripped, never empty
    nouns     bytes*  the caption's nouns and verbs (input_pipeline.nouns); empty list when
                      the manifest's `nouns.tagger` is null (extracted online instead)

The manifest records what the shards hold, so a reader never has to scan them:

    {"format": FORMAT, "name": ..., "num_examples": N,
     "shards": [{"file": "train-00000-of-00004.tfrecord", "num_examples": n,
                 "bytes": size}, ...],   (bytes: checked before training; older manifests
                                          have none)
     "source": {"kind": "webdataset" | "csv" | "folder", "inputs": [...]},
     "nouns": {"tagger": "pattern" | "nltk" | null, "version": "..."},
     "image": {"resize_short_side": 512 | null},
     "skipped": {reason: n, ..., "report": "skipped.jsonl"},  (input_pipeline.convert's
                reasons: undecodable, empty_caption, missing_caption, missing_image,
                undecodable_caption, duplicate_key)
     "created": ISO-8601 time}
"""
from __future__ import annotations

import json
from pathlib import Path

FORMAT = "groupvit_jax.records/v1"
MANIFEST = "manifest.json"
REQUIRED_KEYS = ("num_examples", "shards", "nouns")


def shard_name(prefix: str, index: int, count: int) -> str:
    return f"{prefix}-{index:05d}-of-{count:05d}.tfrecord"


def encode_example(example_id: str, image: bytes, caption: str, nouns: list[str]) -> bytes:
    """One serialised tf.train.Example in the schema above."""
    from tensorflow.core.example import example_pb2, feature_pb2

    def b(values):
        return feature_pb2.Feature(bytes_list=feature_pb2.BytesList(value=values))

    return example_pb2.Example(features=feature_pb2.Features(feature={
        "id": b([example_id.encode()]),
        "image": b([image]),
        "caption": b([caption.encode()]),
        "nouns": b([n.encode() for n in nouns]),
    })).SerializeToString(deterministic=True)  # same bytes in every process


def feature_spec():
    import tensorflow as tf
    return {
        "id": tf.io.FixedLenFeature([], tf.string),
        "image": tf.io.FixedLenFeature([], tf.string),
        "caption": tf.io.FixedLenFeature([], tf.string),
        "nouns": tf.io.RaggedFeature(tf.string),
    }


def parse_example(serialized):
    """Serialised example -> {id, image, caption: string scalars; nouns: string [n]}."""
    import tensorflow as tf
    return tf.io.parse_single_example(serialized, feature_spec())


def write_manifest(folder: str | Path, manifest: dict) -> Path:
    """Writes manifest.json last and atomically: a folder with one is complete."""
    folder = Path(folder)
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise ValueError(f"manifest for {folder} lacks {missing}")
    path = folder / MANIFEST
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"format": FORMAT, **manifest}, indent=2) + "\n")
    tmp.replace(path)
    return path


def read_manifest(path: str | Path) -> dict:
    """A dataset's manifest (given the folder or the file), with `shards[i].path` resolved
    and every shard checked to exist."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no manifest; convert the dataset with "
                                "`python -m input_pipeline.convert` first.")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise ValueError(f"{path}: manifest lacks {missing}")
    absent = []
    for shard in manifest["shards"]:
        shard["path"] = str(path.parent / shard["file"])
        if not Path(shard["path"]).is_file():
            absent.append(shard["file"])
    if absent:
        raise FileNotFoundError(f"{path}: {len(absent)} shard(s) missing, e.g. {absent[:3]}")
    return manifest
