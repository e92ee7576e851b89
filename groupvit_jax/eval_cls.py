"""Zero-shot ImageNet-style classification of a checkpoint: top-1 and top-5.

    python -m groupvit_jax.eval_cls --checkpoint PATH --data_dir DIR \
        [--class_names FILE] [--labels FILE] [--limit N] [--batch_size 64] [--out results.json]

DIR is class-per-subfolder, or a flat folder with --labels; the accepted formats are in
groupvit_jax/evaluation/classification.py. The released gcc_yfcc checkpoint scores 43.7
top-1 on ImageNet val.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import groupvit_jax as gv
from groupvit_jax.evaluation import classification
from groupvit_jax.evaluation.segmentation import progress_line


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True,
                        help="NVlabs .pth, Hugging Face folder or our export")
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--class_names", help="one class name per line, in label order")
    parser.add_argument("--labels", help="labels file of a flat folder ('IMAGE LABEL' lines)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)
    try:
        dataset = classification.read_image_folder(args.data_dir, args.class_names, args.labels)
        model = gv.load_pretrained(args.checkpoint)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    total = len(dataset.paths[:args.limit])
    print(f"{total} images, {len(dataset.class_names)} classes from {args.data_dir}")
    start = time.time()
    result = classification.evaluate(model, dataset, batch_size=args.batch_size,
                                     limit=args.limit, progress=progress_printer())
    seconds = time.time() - start
    result.update(checkpoint=str(args.checkpoint), data_dir=str(args.data_dir),
                  seconds=round(seconds, 2), images_per_s=round(result["num_images"] / seconds, 2))
    print(f"top-1 {result['top1']:.2f}%  top-5 {result['top5']:.2f}%  "
          f"({result['num_images']} images, {result['images_per_s']} images/s)")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
