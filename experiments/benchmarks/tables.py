"""The README speed tables, generated from the committed JSON in results/.

    .venv/bin/python -m experiments.benchmarks.tables              # exit 3 if a table is stale
    .venv/bin/python -m experiments.benchmarks.tables --write_tables

A generated table sits between `<!-- table: NAME -->` and `<!-- end table -->` in
README.md and experiments/benchmarks/README.md; --write_tables rewrites those sections
from the JSON, the plain run checks them (tests/test_bench_hygiene.py runs the check).
"""
from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

from absl import flags

from experiments.benchmarks import hygiene
from input_pipeline import cli

ROOT = Path(__file__).resolve().parents[2]
READMES = (ROOT / "README.md", ROOT / "experiments/benchmarks/README.md")
SECTION = re.compile(r"(<!-- table: (\w+) -->\n)(.*?)(<!-- end table -->)", re.S)


def _load(results: Path, name: str) -> dict:
    return json.loads((results / f"{name}.json").read_text())


def _seconds(times) -> str:
    """'median s (min-max)' of repeated step times."""
    median = statistics.median(times)
    digits = 3 if median < 0.1 else 2
    return f"{median:.{digits}f} s ({min(times):.{digits}f}-{max(times):.{digits}f})"


def _load_note(result: dict) -> str:
    load = result.get("outside_load") or result.get("machine", {}).get("outside_load")
    share = load and load.get("outside_share")
    if share is None:
        return "outside load not recorded"
    verdict = "CONTENDED" if hygiene.is_contended(share) else "idle"
    return f"{verdict}: other processes took {share:.1%} of the CPU"


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def _versus_torch(result: dict, names: dict[str, str], theirs: str) -> str:
    """Our step against the PyTorch one, rows of model_speed / train_speed."""
    ceiling = result.get("cpu_matmul_ceiling_gflop_per_s")
    rows = []
    for row in result["rows"]:
        if row["name"] not in names:
            continue
        flops = row.get("gflop_per_step")
        share = row.get("fraction_of_ceiling")
        rows.append([names[row["name"]], _seconds(row["ours_times"]),
                     _seconds(row[f"{theirs}_times"]), f"{row['speed_up']:.2f}x",
                     f"{flops:.1f}" if flops else "", f"{share:.0%}" if share else ""])
    header = ["step", "ours, median (min-max)", "HF PyTorch", "speed-up", "GFLOP/step",
              "% of the XLA matmul ceiling"]
    note = (f"{len(result['rows'][0]['ours_times'])} runs each, {_load_note(result)}"
            + (f", matmul ceiling {ceiling:.0f} GFLOP/s" if ceiling else "")
            + f" ({result['machine'].get('date', '')[:10]}).")
    return note + "\n\n" + _markdown(header, rows)


def train_table(results: Path) -> str:
    return _versus_torch(_load(results, "train_speed"),
                         {"runlocal": "whole train step, runlocal model",
                          "full gcc_yfcc": "whole train step, full gcc_yfcc"}, "torch")


def model_table(results: Path) -> str:
    return _versus_torch(_load(results, "model_speed"),
                         {"eval fwd 224 b8": "eval forward 224, b8",
                          "train fwd+bwd b8": "train forward+backward, b8",
                          "window 448 b1": "448x448 window (maps + segment embeddings)"}, "hf")


AUGMENTATIONS = {
    "decode_and_crop": "JPEG decode + crop",
    "plain_crop_resize": "decode + crop + resize",
    "rrc_flip": "decode + RandomResizedCrop + flip (recipe: antialiased resize as PIL)",
    "rrc_flip_aliased": "the same with `data.augment.antialias=False`",
    "rrc_flip_draft": "decode + RandomResizedCrop + flip, `data.augment.jpeg_draft=True` "
                      "(not the recipe)",
    "rrc_flip_randaug": "+ RandAugment `rand-m9-mstd0.5-inc1`",
    "recipe": "the training recipe's augmentation",
}


def _rates(values) -> str:
    values = list(values)
    if len(values) == 1:
        return f"{values[0]:.0f} img/s"
    return (f"{statistics.median(values):.0f} img/s "
            f"({min(values):.0f}-{max(values):.0f})")


def pipeline_table(results: Path) -> str:
    augment = _load(results, "augment_speed")["rows"]
    inputs = _load(results, "input_speed")
    evaluation = _load(results, "eval_speed")["runs"]
    one_core = {r["randaugment"]: r for r in inputs["rows"] if r["threads"] == 1}
    rows = [[f"{AUGMENTATIONS.get(name, name)}, one core",
             _rates(run["img_per_s"] for run in row["runs"]), str(row["target"] or "")]
            for name, row in augment.items()]
    for name, row in one_core.items():
        runs = row.get("images_per_s_spread")
        rows.append([f"whole input pipeline (683x512 JPEGs to CLIP tokens), one core, "
                     f"RandAugment {name}",
                     _rates([runs["min"], runs["median"], runs["max"]] if runs
                            else [row["images_per_s"]]), ""])
    for row in _load(results, "reader_speed")["rows"]:
        rates = row["records_per_s"]
        rows.append([f"undecoded records handed to decoding, {row['datasets']} dataset"
                     f"{'s mixed' if row['datasets'] > 1 else ''}, all cores",
                     f"{rates['median']:,.0f} records/s ({rates['min']:,.0f}-"
                     f"{rates['max']:,.0f})", f"{row['target']:,}"])
    rows += [[f"cores a host needs at MFU {inputs['mfu']}, {host} (RandAugment off, on)",
              ", ".join(f"{v:.0f}" for k, v in need.items() if k.startswith("cores_")), ""]
             for host, need in inputs["hosts"].items()]
    for name, run in evaluation.items():
        rates = [run["images"] / t for t in run["all_total_s"]]
        rows.append([f"zero-shot evaluation, {run['images']} images 500x375, {name}",
                     f"{statistics.median(rates):.2f} img/s ({min(rates):.2f}-{max(rates):.2f})"
                     f", {run['outside_tower_share']:.1%} outside the tower",
                     "< 15% outside"])
    return _markdown(["what", "measured, median (min-max)", "target"], rows)


def front_table(results: Path) -> str:
    """README.md's summary: the headline figure of each benchmark."""
    train = {r["name"]: r for r in _load(results, "train_speed")["rows"]}
    window = next(r for r in _load(results, "model_speed")["rows"] if r["name"] == "window 448 b1")
    evaluation = _load(results, "eval_speed")["runs"]["default devices"]
    inputs = {r["randaugment"]: r for r in _load(results, "input_speed")["rows"]
              if r["threads"] == 1}
    rows = [[f"whole train step, {name} model", f"{r['ours_s_per_step']:.3g} s",
             f"{r['torch_s_per_step']:.3g} s ({r['speed_up']:.2f}x)", "`train_speed.json`"]
            for name, r in (("full gcc_yfcc", train["full gcc_yfcc"]),
                            ("runlocal", train["runlocal"]))]
    rows.append(["one 448x448 evaluation window", f"{window['ours_s_per_step']:.2f} s",
                 f"{window['hf_s_per_step']:.2f} s ({window['speed_up']:.2f}x)",
                 "`model_speed.json`"])
    rows.append(["zero-shot evaluation, 500x375 images",
                 f"{evaluation['images_per_s']:.2f} img/s, "
                 f"{evaluation['outside_tower_share']:.1%} outside the tower", "",
                 "`eval_speed.json`"])
    rates = ", ".join(f"{r['images_per_s']:.0f} img/s RandAugment {k}" for k, r in inputs.items())
    rows.append(["input pipeline, one core", rates, "", "`input_speed.json`"])
    return _markdown(["what", "ours", "PyTorch", "record"], rows)


TABLES = {"front": front_table, "train": train_table, "model": model_table,
          "pipeline": pipeline_table}


def render(text: str, results: Path) -> str:
    """`text` with every marked table regenerated from the JSON in `results`."""
    def replace(match):
        name = match.group(2)
        if name not in TABLES:
            raise ValueError(f"unknown generated table {name!r}; known: {sorted(TABLES)}.")
        return match.group(1) + TABLES[name](results) + match.group(4)
    return SECTION.sub(replace, text)


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_bool("write_tables", False, "rewrite the READMEs' generated tables",
                      flag_values=fv)


def _run(args: flags.FlagValues) -> int:
    stale = []
    for readme in READMES:
        text = readme.read_text()
        new = render(text, hygiene.RESULTS)
        if new != text:
            stale.append(readme)
            if args.write_tables:
                readme.write_text(new)
    verb = "rewrote" if args.write_tables else "stale (run with --write_tables)"
    for readme in stale:
        print(f"{readme.relative_to(ROOT)}: {verb}")
    return cli.DATA_ERROR if stale and not args.write_tables else cli.OK


main = cli.binary(define_flags, _run)


if __name__ == "__main__":
    cli.run_main(main)
