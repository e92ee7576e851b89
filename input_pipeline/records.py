"""The on-disk format every dataset is converted to: a TFDS dataset plus our manifest.

A converted dataset is a folder that `tfds.builder_from_directory(folder)` opens (split
"train"; `tfds.as_dataframe`, `tfds.show_examples` and any TFDS reader work on it):

    dataset_info.json, features.json       TFDS's metadata: the features below, the split
                                            and each shard's length
    train-00000-of-00004.tfrecord, ...     TFRecord shards (TFDS filename template
                                            FILENAME_TEMPLATE) of tf.train.Examples:

    id        tfds Text            stable example id: "<source shard or file>/<key>"
    image     tfds Image           the encoded image (JPEG or PNG) as read, or re-encoded
                                   JPEG when resized; the training pipeline reads it
                                   undecoded (tfds.decode.SkipDecoding)
    caption   tfds Text            UTF-8 caption, whitespace-stripped, never empty
    nouns     Sequence(Text)       the caption's nouns and verbs (input_pipeline.nouns);
                                   empty when the manifest's `nouns.tagger` is null
                                   (extracted online instead)

    manifest.json, skipped.jsonl           what TFDS has no place for:

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

Each feature serialises as one bytes_list, so the records `encode_example` writes are the
ones TFDS writes for these features. Folders converted before the TFDS metadata existed
(format OLD_FORMAT, same shards) become TFDS datasets in place, without rewriting a
record: `python -m input_pipeline.add_tfds_metadata --dataset FOLDER`.
"""
from __future__ import annotations

import json
import os

from etils import epath

from input_pipeline import cli, paths

FORMAT = "groupvit_jax.records/v2"
OLD_FORMAT = "groupvit_jax.records/v1"  # the same shards without TFDS's metadata
MANIFEST = "manifest.json"
REQUIRED_KEYS = ("num_examples", "shards", "nouns")
SPLIT = "train"
FILENAME_TEMPLATE = "{SPLIT}-{SHARD_X_OF_Y}.{FILEFORMAT}"  # = shard_name(SPLIT, ...)
MIGRATE = "python -m input_pipeline.add_tfds_metadata --dataset"


def shard_name(prefix: str, index: int, count: int) -> str:
    return f"{prefix}-{index:05d}-of-{count:05d}.tfrecord"


def features():
    """The schema above as TFDS features (tfds.features.FeaturesDict)."""
    import tensorflow_datasets as tfds

    text = tfds.features.Text()
    return tfds.features.FeaturesDict({
        "id": text, "image": tfds.features.Image(), "caption": text,
        "nouns": tfds.features.Sequence(text)})


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


def parse_example(serialized):
    """Serialised example -> {id, image (encoded bytes), caption: string scalars; nouns:
    string [n]}, parsed by TFDS with the schema above."""
    import tensorflow_datasets as tfds
    return features().deserialize_example(
        serialized, decoders={"image": tfds.decode.SkipDecoding()})


def write_tfds_metadata(folder: str | os.PathLike, name: str, shard_lengths: list[int]) -> None:
    """Writes TFDS's dataset_info.json and features.json for the shards in `folder`
    (named by shard_name(SPLIT, ...)), so TFDS opens the folder as a dataset."""
    import tensorflow_datasets as tfds

    folder = paths.as_path(folder)
    template = tfds.core.ShardedFileTemplate(
        data_dir=folder, template=FILENAME_TEMPLATE, dataset_name=name,
        filetype_suffix="tfrecord")
    size = sum((folder / shard_name(SPLIT, i, len(shard_lengths))).stat().length
               for i in range(len(shard_lengths)))
    split = tfds.core.SplitInfo(name=SPLIT, shard_lengths=list(shard_lengths), num_bytes=size,
                                filename_template=template)
    tfds.folder_dataset.write_metadata(
        data_dir=folder, features=features(), split_infos=[split], filename_template=template,
        check_data=False, description="Image-caption pairs converted by input_pipeline.convert; "
        "manifest.json says from what.")


def write_manifest(folder: str | os.PathLike, manifest: dict) -> epath.Path:
    """Writes manifest.json last and atomically: a folder with one is complete."""
    folder = paths.as_path(folder)
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise ValueError(f"manifest for {folder} lacks {missing}")
    document = json.dumps({"format": FORMAT, **manifest}, indent=2) + "\n"
    return paths.write_atomically(folder / MANIFEST, document.encode())


def read_manifest(path: str | os.PathLike) -> dict:
    """A dataset's manifest (given the folder or the file; local or gs://), with
    `shards[i].path` resolved and every shard checked to exist."""
    path = paths.as_path(path)
    if path.is_dir():
        path = path / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no manifest; convert the dataset with "
                                "`python -m input_pipeline.convert` first.")
    manifest = cli.read_json(path)  # invalid JSON: a ValueError naming the file
    if manifest.get("format") == OLD_FORMAT:
        raise ValueError(f"{path}: converted before datasets were TFDS datasets; add TFDS's "
                         f"metadata once (no record is rewritten): {MIGRATE} {path.parent}")
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    if not (path.parent / "dataset_info.json").is_file():
        raise FileNotFoundError(f"{path.parent}: no dataset_info.json (TFDS's metadata); "
                                f"write it with {MIGRATE} {path.parent}")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise ValueError(f"{path}: manifest lacks {missing}")
    present = {p.name for p in path.parent.iterdir()}  # one listing, also in a bucket
    absent = []
    for shard in manifest["shards"]:
        shard["path"] = str(path.parent / shard["file"])
        if shard["file"] not in present:
            absent.append(shard["file"])
    if absent:
        raise FileNotFoundError(f"{path}: {len(absent)} shard(s) missing, e.g. {absent[:3]}")
    return manifest
