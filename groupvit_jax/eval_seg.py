"""Zero-shot semantic segmentation evaluation (the paper's table).

    python -m groupvit_jax.eval_seg --checkpoint group_vit_gcc_yfcc_30e.pth \\
        --dataset voc --data_dir VOCdevkit/VOC2012 --out results/voc.json

--checkpoint: an NVlabs .pth, a Hugging Face folder or our export. Datasets and layouts:
groupvit_jax/evaluation/datasets.py. Defaults reproduce the released protocol (template
"a photo of a {}.", background thresholds VOC 0.95, Context 0.35, COCO-Object 0.95).
--kmeans K segments every window into K k-means clusters of the model's final segment
tokens (the paper's "ViT + k-means" baseline). On several hosts, run it on every host with
--jax_distributed.
"""
from __future__ import annotations

import argparse
import sys

import jax

import groupvit_jax as gv
from groupvit_jax.evaluation import datasets, segmentation
from groupvit_jax.evaluation.metrics import format_table, write_json
from groupvit_jax.evaluation.predict import DEFAULT_TEMPLATE
from groupvit_jax.evaluation.resize import add_scale_flags, scale_from_flags


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--dataset", required=True, choices=sorted(datasets.READERS))
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--out", help="write the results (per-class table included) as JSON")
    parser.add_argument("--vis_dir", help="write each prediction drawn over its image")
    parser.add_argument("--limit", type=int, help="only the first N images")
    parser.add_argument("--bg_thresh", type=float, help="default: the dataset's")
    parser.add_argument("--template", default=DEFAULT_TEMPLATE,
                        help="a template with {} or a set of groupvit_jax/templates.py")
    parser.add_argument("--kmeans", type=int, default=0,
                        help="segment each window into K k-means clusters of the final segment "
                             "tokens (the ViT + k-means baseline); 0: the model's own segments")
    parser.add_argument("--jax_distributed", action="store_true",
                        help="call jax.distributed.initialize() (multi-host)")
    add_scale_flags(parser)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.jax_distributed:
        jax.distributed.initialize()
    try:
        dataset = datasets.load(args.dataset, args.data_dir)
        model = gv.load_pretrained(args.checkpoint)
        predictor = segmentation.make_predictor(model, dataset, args.bg_thresh, args.template,
                                                scale_from_flags(args), args.kmeans)
        results = segmentation.evaluate(predictor, dataset, limit=args.limit,
                                        vis_dir=args.vis_dir)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if jax.process_index() == 0:
        print(format_table(results))
        if args.out:
            write_json({**results, "checkpoint": args.checkpoint}, args.out)
            print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
