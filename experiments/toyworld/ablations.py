"""Toy-world baselines and ablations over seeds: the paper's Table 4 and ablations, small.

    .venv/bin/python -m experiments.toyworld.ablations                  # everything, ~1 hour
    .venv/bin/python -m experiments.toyworld.ablations --only=groupvit,soft --seeds=0 --steps=50

Every run is the main job's chain on the main job's world (experiments/toyworld/config.py): the
train binary's `train_and_evaluate` on the converted records, then the evaluation
binary's code on the held-out scenes. All variants train the same number of steps with
the same recipe; a seed changes the initialisation and the data order, not the world.
    groupvit       the default: hard assignment, two grouping stages, both losses
    soft           soft assignment (the paper's ablation)
    no_multilabel  the image-text loss alone (no prompts from nouns)
    one_stage      one grouping stage of 8 groups
    vit            a ViT of the same width and depth, no grouping; evaluated twice:
                   pixel-wise (each patch is a segment) and k-means (8 clusters of its
                   patch tokens, each named by its projected mean), as the paper's Table 4
Runs resume (a finished run's scores are kept in its workdir). Writes
experiments/toyworld/results/ablations.json and prints mean, std and min/max over seeds.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from absl import flags
from ml_collections import ConfigDict

from input_pipeline import cli

RESULTS = Path(__file__).parent / "results"
KMEANS_SEGMENTS = 8


def _one_stage(c):
    c.model.vision.update(depths=(3, 2), num_group_tokens=(8, 0), num_output_groups=(8,))


def _vit(c):
    c.model.vision.update(depths=(5,), num_group_tokens=(0,), num_output_groups=())


def _no_multilabel(c):
    c.data.num_prompts = 0
    c.model.multi_label_scale = False


def _soft(c):
    c.model.vision.hard_assignment = False


def _groups8(c):
    """Emergence lever: 8 final groups instead of 4 (the paper's Table 2)."""
    c.model.vision.update(num_group_tokens=(16, 8, 0), num_output_groups=(16, 8))


def _seglabel(c):
    """The multi-label loss also from each image's best-matching segment."""
    c.extra_losses.segment_label_weight = 1.0


def _seglabel_only(c):
    """The multi-label loss only from the best-matching segment."""
    c.extra_losses.segment_label_weight = 1.0
    c.multi_label_weight = 0.0


def _balance(c):
    """Group usage balance of both grouping stages (Switch form)."""
    c.extra_losses.group_balance_weight = 0.2


def _infomax(c):
    """Information-maximising balance (sure tokens, even usage)."""
    c.extra_losses.group_balance_weight = 0.2
    c.extra_losses.group_balance_kind = "infomax"


def _mosaic(c):
    """2x2 mosaics of halved batch images, each quadrant named by its caption."""
    c.extra_losses.mosaic_weight = 1.0


def _segnoun(c):
    """Segment-to-noun loss with within-image negatives (batch scope, symmetric)."""
    c.extra_losses.segment_noun_weight = 1.0


def _segnoun_image(c):
    """Segment-to-noun loss, negatives only the same image's other prompts."""
    c.extra_losses.segment_noun_weight = 1.0
    c.extra_losses.segment_noun_scope = "image"


def _segnoun_nounmask(c):
    """Segment-to-noun loss (batch scope); prompts naming the same toy-world noun are not
    each other's negatives."""
    from experiments.toyworld.world.scenes import BACKDROPS, CLASSES
    c.extra_losses.segment_noun_weight = 1.0
    c.extra_losses.segment_noun_words = CLASSES + BACKDROPS


def _soft_choice(c):
    """Every segment named, weighted by a sharp softmax (tau 0.05) over its cosine to the
    prompt, instead of the best segment alone."""
    c.extra_losses.segment_noun_tau = 0.05


def _prompts4(c):
    """K=4 prompts: every noun of a scene (up to 3 objects and the backdrop)."""
    c.data.num_prompts = 4


def _both(*changes):
    def change(c):
        for f in changes:
            f(c)
    return change


# name -> (config change, [(row name, k-means clusters: 0 = the model's own segments)])
VARIANTS = {
    "groupvit": (lambda c: None, [("groupvit", 0)]),
    "soft": (_soft, [("soft", 0)]),
    "no_multilabel": (_no_multilabel, [("no_multilabel", 0)]),
    "one_stage": (_one_stage, [("one_stage", 0)]),
    "vit": (_vit, [("vit_pixelwise", 0), ("vit_kmeans", KMEANS_SEGMENTS)]),
    # The emergence research (EMERGENCE_RESEARCH.md): every variant that was run.
    "groups8": (_groups8, [("groups8", 0)]),
    "seglabel": (_seglabel, [("seglabel", 0)]),
    "seglabel_only": (_seglabel_only, [("seglabel_only", 0)]),
    "balance": (_balance, [("balance", 0)]),
    "mosaic": (_mosaic, [("mosaic", 0)]),
    "seg_g8": (_both(_seglabel, _groups8), [("seg_g8", 0)]),
    "seg_infomax": (_both(_seglabel, _infomax), [("seg_infomax", 0)]),
    "segnoun": (_segnoun, [("segnoun", 0)]),
    "segnoun_g8": (_both(_segnoun, _groups8), [("segnoun_g8", 0)]),
    "segnoun_nm": (_segnoun_nounmask, [("segnoun_nm", 0)]),
    "segnoun_img": (_segnoun_image, [("segnoun_img", 0)]),
    "segnoun_img_p4": (_both(_segnoun_image, _prompts4), [("segnoun_img_p4", 0)]),
    "segnoun_img_soft": (_both(_segnoun_image, _soft_choice), [("segnoun_img_soft", 0)]),
}


def run_variant(config_file: str, name: str, seed: int, steps: int, workdir: Path) -> list[dict]:
    """Trains one variant with one seed (or finds it trained) and scores it; one row per
    evaluation of it."""
    from groupvit_jax.train import trainer
    from groupvit_jax.train.config_files import load_config
    from groupvit_jax.evaluation import datasets
    from groupvit_jax.train.export import read_training_checkpoint
    from experiments.toyworld import main

    scores_file = workdir / "scores.json"
    if scores_file.is_file():
        return json.loads(scores_file.read_text())
    config = load_config(config_file)
    seg_cfg = config.evals.seg
    change, evaluations = VARIANTS[name]
    change(config)
    config.seed = seed
    config.total_steps = steps
    config.evals = ConfigDict()  # scored once at the end, on every held-out scene
    data_dir = main.write_world(config)
    trainer.train_and_evaluate(config, workdir / "train")   # returns at once when trained
    model = read_training_checkpoint(workdir / "train")
    dataset = datasets.folder(data_dir / "eval")
    rows = []
    for row_name, kmeans in evaluations:
        scores = main.evaluate(model, dataset, seg_cfg, kmeans, log=lambda m: None)
        cls, oracle = scores["scene_classification"], scores["oracle_grouping"] or {}
        rows.append({"name": row_name, "seed": seed, "steps": steps,
                     "mIoU": scores["segmentation"]["mIoU"], "top1": cls["top1"],
                     "top1_everywhere_mIoU": cls["top1_everywhere_mIoU"],
                     "oracle_mIoU": oracle.get("mIoU"), "groups_used": oracle.get("groups_used")})
    scores_file.write_text(json.dumps(rows, indent=2) + "\n")
    return rows


COLUMNS = ("mIoU", "top1", "top1_everywhere_mIoU", "oracle_mIoU", "groups_used")


def merge_runs(old: list[dict], new: list[dict]) -> list[dict]:
    """The results file is a running log: rows of earlier invocations are kept unless
    this one re-ran the same (name, seed, steps)."""
    key = lambda r: (r["name"], r["seed"], r["steps"])
    fresh = {key(r) for r in new}
    return [r for r in old if key(r) not in fresh] + new


def summarise(rows: list[dict]) -> list[dict]:
    """Per variant and step count: mean and std (over seeds) of every column, and mIoU's
    min and max."""
    table = []
    for name, steps in dict.fromkeys((r["name"], r.get("steps")) for r in rows):
        mine = [r for r in rows if r["name"] == name and r.get("steps") == steps]
        entry = {"name": name, "steps": steps, "seeds": len(mine)}
        for column in COLUMNS:
            values = [r[column] for r in mine if r.get(column) is not None]
            if values:
                entry[f"{column}_mean"] = float(np.mean(values))
                entry[f"{column}_std"] = float(np.std(values))
        entry["mIoU_min"] = min(r["mIoU"] for r in mine)
        entry["mIoU_max"] = max(r["mIoU"] for r in mine)
        table.append(entry)
    return table


def _cell(entry: dict, column: str) -> str:
    if f"{column}_mean" not in entry:
        return "-"
    return f"{entry[column + '_mean']:.1f} ± {entry[column + '_std']:.1f}"


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("config", "experiments/toyworld/config.py", "the main job's config file",
                        flag_values=fv)
    flags.DEFINE_list("only", list(VARIANTS), f"comma-separated variants of {list(VARIANTS)}",
                      flag_values=fv)
    flags.register_validator("only", lambda names: set(names) <= set(VARIANTS),
                             f"variants are {list(VARIANTS)}", flag_values=fv)
    flags.DEFINE_list("seeds", ["0", "1", "2"], "comma-separated integer seeds", flag_values=fv)
    flags.register_validator("seeds", lambda seeds: all(s.isdigit() for s in seeds),
                             "seeds are integers >= 0", flag_values=fv)
    flags.DEFINE_integer("steps", 300, "training steps of every run", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_string("workdir", "out/toyworld_ablations", "one workdir per variant and seed "
                        "under it", flag_values=fv)
    flags.DEFINE_string("out", str(RESULTS / "ablations.json"), "the results' JSON",
                        flag_values=fv)


def _run(args: flags.FlagValues) -> int:
    from groupvit_jax.train.config_files import load_config
    from groupvit_jax.evaluation import datasets
    from experiments.toyworld.main import all_background
    from groupvit_jax.train.trainer import quiet_orbax_logs
    seeds = [int(s) for s in args.seeds]
    eval_dir = Path(load_config(args.config).data.data_dir) / "eval"  # a bad --config fails first
    quiet_orbax_logs()
    rows = []
    for name in args.only:
        for seed in seeds:
            t = time.time()
            workdir = Path(args.workdir) / name / f"seed{seed}"
            got = run_variant(args.config, name, seed, args.steps, workdir)
            rows += got
            print(f"[ablations] {name} seed {seed}: "
                  + ", ".join(f"{r['name']} mIoU {r['mIoU']:.1f} top-1 {r['top1']:.1f}%"
                              for r in got) + f" ({time.time() - t:.0f}s)", flush=True)
    baseline = all_background(datasets.folder(eval_dir))["mIoU"]
    out = Path(args.out)
    if out.is_file():
        rows = merge_runs(json.loads(out.read_text()).get("runs", []), rows)
    table = summarise(rows)
    result = {"all_background_mIoU": baseline, "table": table, "runs": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    header = ("variant", "steps", "seeds", "mIoU", "min..max", "image top-1 %",
              "top-1 everywhere mIoU", "oracle-named groups mIoU", "groups used")
    print(" | ".join(header))
    print(f"all_background | | | {baseline:.1f} | | | | |")
    for e in table:
        print(" | ".join([e["name"], str(e["steps"]), str(e["seeds"]), _cell(e, "mIoU"),
                          f"{e['mIoU_min']:.1f}..{e['mIoU_max']:.1f}",
                          _cell(e, "top1"), _cell(e, "top1_everywhere_mIoU"),
                          _cell(e, "oracle_mIoU"), _cell(e, "groups_used")]))
    print(f"wrote {args.out}")
    return cli.OK


main = cli.binary(define_flags, _run)


if __name__ == "__main__":
    cli.run_main(main)
