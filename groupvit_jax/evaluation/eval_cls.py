"""Zero-shot ImageNet-style classification of a checkpoint: top-1 and top-5.

    python -m groupvit_jax.evaluation.eval_cls --checkpoint=PATH --data_dir=DIR \
        [--class_names=FILE] [--labels=FILE] [--limit=N] [--batch_size=64] [--out=results.json]

DIR is class-per-subfolder, or a flat folder with --labels, or tfds:NAME[:SPLIT] for a
dataset TFDS has prepared (`--data_dir=tfds:imagenet2012`: its validation split, from
--tfds_data_dir or TFDS_DATA_DIR, with CLIP's names in --class_names); the accepted
formats are in groupvit_jax/evaluation/classification.py. The released gcc_yfcc
checkpoint scores 43.7 top-1 on ImageNet val. On several hosts, run it on every host (see
groupvit_jax/multihost.py for when it joins the others by itself, else pass
--jax_distributed): each scores its share of the images, the first prints and writes the
totals.
"""
from __future__ import annotations

import sys
import time

import jax
from absl import flags

import groupvit_jax as gv
from groupvit_jax import multihost
from groupvit_jax.evaluation import classification
from groupvit_jax.evaluation.segmentation import progress_line
from input_pipeline import cli


def progress_printer(every_s: float = 5.0):
    """A progress callback printing images/s and ETA at most every `every_s` seconds."""
    start = time.time()
    last = [0.0]

    def report(done: int, total: int):
        now = time.time()
        if now - last[0] < every_s and done < total:
            return
        last[0] = now
        print(progress_line(done, total, now - start), file=sys.stderr, flush=True)
    return report


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("checkpoint", None, "NVlabs .pth, Hugging Face folder or our export",
                        flag_values=fv, required=True)
    flags.DEFINE_string("data_dir", None, "class-per-subfolder images, a flat folder with "
                        "--labels, or tfds:NAME[:SPLIT]", flag_values=fv, required=True)
    flags.DEFINE_string("tfds_data_dir", None, "TFDS's data_dir for tfds:NAME (default: "
                        "TFDS_DATA_DIR, else ~/tensorflow_datasets)", flag_values=fv)
    flags.DEFINE_string("class_names", None, "one class name per line, in label order",
                        flag_values=fv)
    flags.DEFINE_string("labels", None, "labels file of a flat folder ('IMAGE LABEL' lines)",
                        flag_values=fv)
    flags.DEFINE_integer("limit", None, "only the first N images", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_integer("batch_size", 64, "images per tower batch", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_string("out", None, "write the results as JSON here", flag_values=fv)
    cli.define_jax_distributed(fv)


def _run(args: flags.FlagValues) -> int:
    if args.out:
        cli.check_writable(args.out, folder=False)
    multihost.initialize(args.jax_distributed)
    dataset = classification.read_dataset(args.data_dir, args.class_names, args.labels,
                                          args.tfds_data_dir)
    multihost.check_hosts_agree({"flags": multihost.flag_facts(args),
                                 "images": [str(p) for p in dataset.paths],  # () for TFDS
                                 "labels": dataset.labels.tolist(),
                                 "class_names": dataset.class_names})
    model = gv.load_pretrained(args.checkpoint)
    first = jax.process_index() == 0  # every host scores its share; the first reports
    total = len(dataset.labels[:args.limit])
    if first:
        print(f"{total} images, {len(dataset.class_names)} classes from {args.data_dir}")
    start = time.time()
    result = classification.evaluate(model, dataset, batch_size=args.batch_size,
                                     limit=args.limit,
                                     progress=progress_printer() if first else None)
    seconds = time.time() - start
    result.update(checkpoint=str(args.checkpoint), data_dir=str(args.data_dir),
                  seconds=round(seconds, 2), images_per_s=round(result["num_images"] / seconds, 2))
    if first:
        print(f"top-1 {result['top1']:.2f}%  top-5 {result['top5']:.2f}%  "
              f"({result['num_images']} images, {result['images_per_s']} images/s)")
        if args.out:
            cli.write_json(result, args.out)
    return cli.OK


main = cli.binary(define_flags, _run)


if __name__ == "__main__":
    cli.run_main(main)
