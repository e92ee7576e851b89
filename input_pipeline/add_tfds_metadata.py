"""Makes datasets converted before they were TFDS datasets (manifest format v1) TFDS
datasets, in place:

    python -m input_pipeline.add_tfds_metadata --dataset /data/gcc3m [--dataset /data/gcc12m]

Their shards already hold the records TFDS reads for input_pipeline.records' features,
under TFDS-compatible names; this writes dataset_info.json and features.json beside
them and moves the manifest to the current format. No record is read or rewritten.
"""
from __future__ import annotations

import os

from absl import flags

from input_pipeline import cli, paths, records


def add_metadata(folder: str | os.PathLike) -> dict:
    """Writes TFDS's metadata for an OLD_FORMAT dataset and returns its manifest."""
    folder = paths.as_path(folder)
    path = folder / records.MANIFEST
    manifest = cli.read_json(path) if path.is_file() else None
    if manifest is None or manifest.get("format") != records.OLD_FORMAT:
        found = "no manifest" if manifest is None else f"format {manifest.get('format')!r}"
        raise ValueError(f"{path}: {found}; only {records.OLD_FORMAT!r} datasets need "
                         "the migration")
    shards = manifest["shards"]
    expected = [records.shard_name(records.SPLIT, i, len(shards)) for i in range(len(shards))]
    named = [s["file"] for s in shards]
    if named != expected:
        raise ValueError(f"{path}: shards {named[:3]}... are not named "
                         f"{expected[:3]}...; TFDS finds shards by that template")
    missing = [f for f in named if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{path}: {len(missing)} shard(s) missing, e.g. {missing[:3]}")
    records.write_tfds_metadata(folder, manifest.get("name") or folder.name,
                                [s["num_examples"] for s in shards])
    records.write_manifest(folder, {**manifest, "format": records.FORMAT})
    return records.read_manifest(folder)


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_multi_string("dataset", None, "a dataset folder written by an earlier "
                              "input_pipeline.convert; repeat the flag for more",
                              flag_values=fv, required=True)


def _run(args: flags.FlagValues) -> int:
    for folder in args.dataset:
        manifest = add_metadata(folder)
        print(f"{folder}: a TFDS dataset now ({manifest['num_examples']} examples in "
              f"{len(manifest['shards'])} shards)")
    return cli.OK


main = cli.binary(define_flags, _run)


if __name__ == "__main__":
    cli.run_main(main)
