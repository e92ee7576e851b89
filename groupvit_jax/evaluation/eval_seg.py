"""Zero-shot semantic segmentation evaluation (the paper's table).

    python -m groupvit_jax.evaluation.eval_seg --checkpoint group_vit_gcc_yfcc_30e.pth \\
        --dataset voc --data_dir VOCdevkit/VOC2012 --out results/voc.json

--checkpoint: an NVlabs .pth, a Hugging Face folder or our export. Datasets and layouts:
groupvit_jax/evaluation/datasets.py. Defaults reproduce the released protocol (template
"a photo of a {}.", background thresholds VOC 0.95, Context 0.35, COCO-Object 0.95).
--kmeans K segments every window into K k-means clusters of the model's final segment
tokens (the paper's "ViT + k-means" baseline). On several hosts, run it on every host (see
groupvit_jax/multihost.py for when it joins the others by itself, else pass
--jax_distributed): each predicts its share of the images, the first prints and writes
the results and every --vis_dir picture.
"""
from __future__ import annotations

import jax
from absl import flags

import groupvit_jax as gv
from groupvit_jax import multihost
from groupvit_jax.evaluation import datasets, segmentation
from groupvit_jax.evaluation.metrics import format_table, write_json
from groupvit_jax.evaluation.predict import add_template_flag
from groupvit_jax.evaluation.resize import add_scale_flags, scale_from_flags
from input_pipeline import cli


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("checkpoint", None, "NVlabs .pth, Hugging Face folder or our export",
                        flag_values=fv, required=True)
    flags.DEFINE_enum("dataset", None, sorted(datasets.READERS), "the dataset's layout",
                      flag_values=fv, required=True)
    flags.DEFINE_string("data_dir", None, "the dataset's folder", flag_values=fv, required=True)
    flags.DEFINE_string("out", None, "write the results (per-class table included) as JSON",
                        flag_values=fv)
    flags.DEFINE_string("vis_dir", None, "write each prediction drawn over its image",
                        flag_values=fv)
    flags.DEFINE_integer("limit", None, "only the first N images", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_float("bg_thresh", None, "background below this score, in [0, 1]; default: "
                       "the dataset's", lower_bound=0, upper_bound=1, flag_values=fv)
    add_template_flag(fv)
    flags.DEFINE_integer("kmeans", 0, "segment each window into K k-means clusters of the final "
                         "segment tokens (the ViT + k-means baseline); 0: the model's own "
                         "segments", lower_bound=0, flag_values=fv)
    cli.define_jax_distributed(fv)
    add_scale_flags(fv)


def _run(args: flags.FlagValues) -> int:
    scale = scale_from_flags(args)
    for path, folder in ((args.out, False), (args.vis_dir, True)):
        if path:
            cli.check_writable(path, folder)
    multihost.initialize(args.jax_distributed)
    dataset = datasets.load(args.dataset, args.data_dir)
    multihost.check_hosts_agree({"flags": multihost.flag_facts(args),
                                 "pairs": [[str(p) for p in pair] for pair in dataset.pairs],
                                 "class_names": dataset.class_names})
    model = gv.load_pretrained(args.checkpoint)
    predictor = segmentation.make_predictor(model, dataset, args.bg_thresh, args.template,
                                            scale, args.kmeans)
    results = segmentation.evaluate(predictor, dataset, limit=args.limit, vis_dir=args.vis_dir)
    if jax.process_index() == 0:
        print(format_table(results))
        if args.out:
            write_json({**results, "checkpoint": args.checkpoint}, args.out)
    return cli.OK


main = cli.binary(define_flags, _run)


if __name__ == "__main__":
    cli.run_main(main)
