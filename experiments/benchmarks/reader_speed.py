"""Undecoded record reading: records/s per host that the training stream's reader hands to
decoding (input_pipeline.resumable: the shuffled, mixed records in chunks, passed to the
decoding pipeline as tensors, the reader's position saved every few chunks), from local
shards.

    python -m experiments.benchmarks.reader_speed [--data DIR] [--records N] [--repeats 3]
        [--tiny] [--allow_contended]

Without --data, 1024 photo-like 683x512 JPEGs (about 127 KB a record, as in input_speed)
are converted into two datasets of 8 shards. Rows: one dataset, and the two mixed; each
the median of --repeats runs (min, max) of --records records after one warm-up chunk,
with tf.data at data.num_threads = all cores. Timed: the chunks as the decoding pipeline
receives them (ResumableBatches.undecoded), before it takes them apart record by record.
Also records per CPU-second (all threads): on a busy machine that is the steadier
figure. Target: 10,000 records/s per host, what a TPU v4 host consumes at 40% MFU
(input_speed). Writes results/reader_speed.json; a contended run is refused there
(experiments.benchmarks.hygiene).
"""
from __future__ import annotations

import datetime
import os
import platform
import tempfile
import time
from pathlib import Path

from absl import flags

from experiments.benchmarks import hygiene
from groupvit_jax.train.config_files import load_config
from input_pipeline import cli, records

RESULTS = Path("experiments/benchmarks/results")
TARGET = 10000  # records/s per host: a TPU v4 host's images/s at 40% MFU (input_speed)


def records_per_second(config, count: int) -> tuple[float, float]:
    """(records/s, records per CPU-second) of the chunks handed to decoding."""
    from input_pipeline.resumable import ResumableBatches

    chunks = iter(ResumableBatches(config, process_index=0, process_count=1).undecoded)
    next(chunks)  # warm-up: tracing, file opening, the first shuffle block
    read, start, cpu = 0, time.perf_counter(), time.process_time()
    while read < count:
        read += len(next(chunks)["record"])
    return read / (time.perf_counter() - start), read / (time.process_time() - cpu)


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("config", "configs/gcc_yfcc_2stage.py", "the training config file",
                        flag_values=fv)
    flags.DEFINE_string("data", None, "a converted dataset folder (default: generate two)",
                        flag_values=fv)
    flags.DEFINE_integer("records", 30000, "timed records per run", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_integer("repeats", 3, "runs per row", lower_bound=1, flag_values=fv)
    flags.DEFINE_bool("tiny", False, "a few small runs: checks it runs", flag_values=fv)
    flags.DEFINE_string("out", None, "JSON results path; default results/reader_speed.json "
                        "(--tiny: the temporary folder)", flag_values=fv)
    hygiene.define_flags(fv)


def _run(args: flags.FlagValues) -> int:
    load_config(args.config)  # bad inputs fail here, before TensorFlow loads
    if args.data is not None:
        records.read_manifest(args.data)
    import tensorflow as tf
    tf.config.set_visible_devices([], "GPU")
    from experiments.benchmarks.input_speed import write_images
    from input_pipeline.convert import convert_dataset

    images, count, repeats = (48, 600, 1) if args.tiny else (1024, args.records, args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        folders = [args.data] if args.data else []
        if not folders:
            write_images(Path(tmp) / "images", images)
            for name in ("a", "b"):
                convert_dataset([str(Path(tmp) / "images")], "folder", Path(tmp) / name,
                                name=name, examples_per_shard=images // 8, progress=False)
            folders = [str(Path(tmp) / "a"), str(Path(tmp) / "b")]
        config = load_config(args.config)
        config.data.source, config.data.data_dir = "records", ""
        config.data.num_threads = os.cpu_count()
        config.data.shuffle_buffer = min(config.data.shuffle_buffer, images)
        # Nothing is decoded here, so no batch is ever formed: keep the reader's guard
        # against endless runs of skipped examples from stopping it.
        config.data.max_skipped_in_a_row = 2**62
        rows = []
        load = hygiene.OutsideLoad()  # from here: conversion above is not timed
        for used in (folders[:1], folders) if len(folders) > 1 else (folders,):
            config.data.datasets = {folder: 1.0 for folder in used}
            runs = [records_per_second(config, count) for _ in range(repeats)]
            row = {"datasets": len(used), "target": TARGET,
                   "records_per_s": hygiene.spread(wall for wall, _ in runs),
                   "records_per_cpu_s": hygiene.spread(cpu for _, cpu in runs)}
            rows.append(row)
            print(f"{len(used)} dataset(s): {row['records_per_s']['median']:8.0f} records/s "
                  f"({row['records_per_s']['min']:.0f}-{row['records_per_s']['max']:.0f}), "
                  f"{row['records_per_cpu_s']['median']:8.0f} per CPU-second")
    result = {"benchmark": "reader_speed",
              "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                          "tensorflow": tf.__version__},
              "tiny": args.tiny, "records": count, "repeats": repeats,
              "data": args.data or "generated", "rows": rows,
              "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    out = args.out or (Path(tempfile.gettempdir()) if args.tiny else RESULTS) / "reader_speed.json"
    return hygiene.finish(result, load, out, args.allow_contended, repeats)


main = cli.binary(define_flags, _run)


if __name__ == "__main__":
    cli.run_main(main)
