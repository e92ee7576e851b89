"""`config.data.datasets` (name or folder/glob -> weight) resolved to converted datasets.

A bare name is a folder under `config.data.data_dir` (`<data_dir>/<name>/manifest.json`);
the paper's are below. Anything with a "/" or a glob character names converted folders
directly. Weights scale each dataset's EXAMPLES: a dataset is drawn with probability
weight x num_examples / sum(weight x num_examples). Equal weights therefore reproduce
the released code, which concatenated the datasets' shards into one shuffled stream
(CC3M + CC12M + YFCC14M for gcc_yfcc), so every example is equally likely.
"""
from __future__ import annotations

import dataclasses
import glob
from collections.abc import Mapping
from pathlib import Path

from input_pipeline import records

PAPER_DATASETS = {
    "gcc3m": "Conceptual Captions 3M",
    "gcc12m": "Conceptual 12M",
    "yfcc14m": "YFCC100M's 14M English subset",
    "redcap12m": "RedCaps 12M",
}


@dataclasses.dataclass(frozen=True)
class Source:
    name: str
    folder: str
    weight: float
    manifest: dict

    @property
    def files(self) -> list[str]:
        return [shard["path"] for shard in self.manifest["shards"]]


def _is_path(key: str) -> bool:
    return "/" in key or any(c in key for c in "*?[")


def _folders(key: str, data_dir: str | None) -> list[Path]:
    if _is_path(key):
        matches = sorted(Path(m) for m in glob.glob(key))
        found = [m for m in matches if (m / records.MANIFEST).is_file()]
        if not found:
            raise FileNotFoundError(
                f"data.datasets[{key!r}]: no converted dataset (a folder with "
                f"{records.MANIFEST}) matches; matched {[str(m) for m in matches] or 'nothing'}.")
        return found
    if not data_dir:
        raise ValueError(f"data.datasets names {key!r} but data.data_dir is empty: pass "
                         "--config.data.data_dir=DIR (the folder holding converted datasets).")
    folder = Path(data_dir) / key
    if not (folder / records.MANIFEST).is_file():
        what = PAPER_DATASETS.get(key, "it")
        raise FileNotFoundError(f"data.datasets[{key!r}]: looked for {folder / records.MANIFEST}; "
                                f"convert {what} there with `python -m input_pipeline.convert`.")
    return [folder]


def resolve(datasets: Mapping[str, float], data_dir: str | None) -> list[Source]:
    """One Source per converted folder, in the config's order."""
    if not datasets:
        raise ValueError("data.datasets is empty: give at least one name or folder -> weight.")
    sources = []
    for key, weight in datasets.items():
        if not weight > 0:
            raise ValueError(f"data.datasets[{key!r}]={weight}: weights must be positive.")
        for folder in _folders(key, data_dir):
            manifest = records.read_manifest(folder)
            if not manifest["shards"] or manifest["num_examples"] <= 0:
                raise ValueError(f"{folder}: the dataset has no examples.")
            name = key if not _is_path(key) else folder.name
            sources.append(Source(name, str(folder), float(weight), manifest))
    return sources


def probabilities(sources: list[Source]) -> list[float]:
    """Each source's share of the stream: weight x num_examples, normalised."""
    mass = [s.weight * s.manifest["num_examples"] for s in sources]
    return [m / sum(mass) for m in mass]
