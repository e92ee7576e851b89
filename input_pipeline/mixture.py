"""`config.data.datasets` (name, folder/glob or tfds:NAME -> weight) resolved to TFDS
datasets.

- A bare name is a converted folder under `config.data.data_dir`
  (`<data_dir>/<name>/manifest.json`); the paper's are below.
- Anything with a "/" or a glob character (and no "tfds:") names converted folders
  directly.
- `tfds:NAME[:SPLIT]` is a dataset TFDS has prepared, e.g. `tfds:coco_captions/2017`
  (split "train" unless given), in `config.data.data_dir` when set, else TFDS's default
  (TFDS_DATA_DIR, ~/tensorflow_datasets). `config.data.tfds_fields` names its image and
  caption features (input_pipeline.fields); it trains without conversion.

Weights scale each dataset's EXAMPLES: a dataset is drawn with probability
weight x num_examples / sum(weight x num_examples). Equal weights therefore reproduce
the released code, which concatenated the datasets' shards into one shuffled stream
(CC3M + CC12M + YFCC14M for gcc_yfcc), so every example is equally likely.
"""
from __future__ import annotations

import dataclasses
import glob
from collections.abc import Mapping
from typing import Any

from etils import epath

from input_pipeline import fields, paths, records

TFDS_PREFIX = "tfds:"
PAPER_DATASETS = {
    "gcc3m": "Conceptual Captions 3M",
    "gcc12m": "Conceptual 12M",
    "yfcc14m": "YFCC100M's 14M English subset",
    "redcap12m": "RedCaps 12M",
}


@dataclasses.dataclass(frozen=True)
class Source:
    name: str
    weight: float
    num_examples: int
    builder: Any      # a tfds.core.DatasetBuilder with the data prepared
    split: str        # of builder, e.g. "train"
    fields: fields.Fields
    shard_bytes: Mapping[str, int] = dataclasses.field(default_factory=dict)  # path -> size

    @property
    def folder(self) -> str:
        return str(self.builder.data_dir)

    def shards(self) -> list[tuple[str, int]]:
        """(file, records) of every shard of the split."""
        return [(str(i.filename), i.take) for i in
                self.builder.info.splits[self.split].file_instructions]


def _is_path(key: str) -> bool:
    return "/" in key or any(c in key for c in "*?[")


def _glob(pattern: str) -> list[epath.Path]:
    """Local paths by the glob module; in a bucket, a pattern in the last part only."""
    if not paths.is_remote(pattern):
        return sorted(paths.as_path(m) for m in glob.glob(pattern))
    path = paths.as_path(pattern)
    return sorted(path.parent.glob(path.name))


def _folders(key: str, data_dir: str | None) -> list[epath.Path]:
    if _is_path(key):
        matches = _glob(key)
        found = [m for m in matches if (m / records.MANIFEST).is_file()]
        if not found:
            raise FileNotFoundError(
                f"data.datasets[{key!r}]: no converted dataset (a folder with "
                f"{records.MANIFEST}) matches; matched {[str(m) for m in matches] or 'nothing'}.")
        return found
    if not data_dir:
        raise ValueError(f"data.datasets names {key!r} but data.data_dir is empty: pass "
                         "--config.data.data_dir=DIR (the folder holding converted datasets).")
    folder = paths.as_path(data_dir) / key
    if not (folder / records.MANIFEST).is_file():
        what = PAPER_DATASETS.get(key, "it")
        raise FileNotFoundError(f"data.datasets[{key!r}]: looked for {folder / records.MANIFEST}; "
                                f"convert {what} there with `python -m input_pipeline.convert`.")
    return [folder]


def _converted(folder: epath.Path, name: str, weight: float) -> Source:
    import tensorflow_datasets as tfds

    manifest = records.read_manifest(folder)
    if not manifest["shards"] or manifest["num_examples"] <= 0:
        raise ValueError(f"{folder}: the dataset has no examples.")
    stored = fields.CONVERTED if manifest["nouns"].get("tagger") else fields.CONVERTED_WITHOUT_NOUNS
    return Source(name, weight, manifest["num_examples"], tfds.builder_from_directory(str(folder)),
                  records.SPLIT, stored,
                  {shard["path"]: shard["bytes"] for shard in manifest["shards"] if "bytes" in shard})


def prepared_split(spec: str, default_split: str, data_dir: str | None) -> tuple[Any, str, int]:
    """(builder, split, num_examples) of `tfds:NAME[:SPLIT]`, which TFDS has prepared in
    data_dir (None: TFDS_DATA_DIR or its default); FileNotFoundError saying how to
    prepare it, ValueError for an empty split."""
    import tensorflow_datasets as tfds

    name, _, split = spec[len(TFDS_PREFIX):].partition(":")
    split = split or default_split
    try:
        builder = tfds.builder(name, data_dir=data_dir or None)
        num_examples = builder.info.splits[split].num_examples
    except (tfds.core.registered.DatasetNotFoundError, KeyError, ValueError) as e:
        where = data_dir or "TFDS's data_dir (TFDS_DATA_DIR, default ~/tensorflow_datasets)"
        raise FileNotFoundError(f"{spec}: no prepared split {split!r} of {name!r} in {where}; "
                                f"prepare it with `tfds build {name} --data_dir=...` "
                                f"({type(e).__name__}: {e})") from e
    if num_examples <= 0:
        raise ValueError(f"{spec}: split {split!r} has no examples.")
    return builder, split, num_examples


def _prepared(key: str, weight: float, data_dir: str | None,
              tfds_fields: Mapping[str, str]) -> Source:
    builder, split, num_examples = prepared_split(key, "train", data_dir)
    chosen = fields.from_config(tfds_fields)
    fields.parser(builder.info.features, chosen, key)  # a wrong field name fails here
    return Source(key, weight, num_examples, builder, split, chosen)


def resolve(datasets: Mapping[str, float], data_dir: str | None,
            tfds_fields: Mapping[str, str] | None = None) -> list[Source]:
    """One Source per dataset (per folder of a glob), in the config's order."""
    if not datasets:
        raise ValueError("data.datasets is empty: give at least one name or folder -> weight.")
    sources = []
    for key, weight in datasets.items():
        if not weight > 0:
            raise ValueError(f"data.datasets[{key!r}]={weight}: weights must be positive.")
        if key.startswith(TFDS_PREFIX):
            if tfds_fields is None:
                raise ValueError(f"data.datasets[{key!r}] needs data.tfds_fields.")
            sources.append(_prepared(key, float(weight), data_dir, tfds_fields))
            continue
        for folder in _folders(key, data_dir):
            name = key if not _is_path(key) else folder.name
            sources.append(_converted(folder, name, float(weight)))
    return sources


def probabilities(sources: list[Source]) -> list[float]:
    """Each source's share of the stream: weight x num_examples, normalised."""
    mass = [s.weight * s.num_examples for s in sources]
    return [m / sum(mass) for m in mass]
