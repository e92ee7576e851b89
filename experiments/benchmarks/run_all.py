"""Every benchmark of the project in one run: one table printed, one JSON written.

    .venv/bin/python -m experiments.benchmarks.run_all [--quick] [--only=NAME,...]

Each benchmark runs as its own process (fresh XLA flags and thread pools) and writes its
own JSON in experiments/benchmarks/results/; this script then gathers them into
results/all.json and prints their rows. Run it on an idle machine: the figures are
speeds, and a second busy process changes them several times over. --quick runs each
in its smoke mode (seconds, figures meaningless) and writes to a temporary folder.
A benchmark refuses to write a contended run into results/ (experiments/benchmarks/
hygiene.py); at the end the figures that moved by more than 15% from the committed
results/all.json are named. With --only, the other benchmarks' results in all.json are
kept.
"""
from __future__ import annotations

import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from absl import flags

from experiments.benchmarks import hygiene
from input_pipeline import cli

RESULTS = hygiene.RESULTS
# name -> (module, arguments of a full run, arguments of a smoke run)
BENCHMARKS = {
    "model_speed": ("experiments.benchmarks.model_speed", [], ["--quick"]),
    "train_speed": ("experiments.benchmarks.train_speed", [], ["--quick"]),
    "eval_speed": ("experiments.benchmarks.eval_speed", ["--images", "50"], ["--images", "2"]),
    "input_speed": ("experiments.benchmarks.input_speed", [], ["--tiny"]),
    "reader_speed": ("experiments.benchmarks.reader_speed", [], ["--tiny"]),
    "augment_speed": ("experiments.benchmarks.augment_speed", [], ["--quick"]),
    "step_profile": ("experiments.benchmarks.step_profile", [],
                     ["--variant", "runlocal", "--steps", "1"]),
}


def _figures(row: dict) -> str:
    """A row's top-level numbers, compactly (names kept: every benchmark has its own
    columns)."""
    def fmt(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)
    return ", ".join(f"{k}={fmt(v)}" for k, v in row.items()
                     if k != "name" and isinstance(v, (int, float)) and not isinstance(v, bool))


def table(results: dict) -> str:
    lines = [f"{'benchmark':<14} {'row':<36} figures", "-" * 100]
    for bench, result in results.items():
        for name, row in hygiene.rows(result):
            lines.append(f"{bench:<14} {name:<36} {_figures(row)}")
    return "\n".join(lines)


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_bool("quick", False, "smoke runs, temporary outputs", flag_values=fv)
    flags.DEFINE_list("only", None, f"a comma-separated subset of {sorted(BENCHMARKS)}",
                      flag_values=fv)
    hygiene.define_flags(fv)
    flags.register_validator("only", lambda names: set(names or ()) <= set(BENCHMARKS),
                             f"benchmarks are {sorted(BENCHMARKS)}", flag_values=fv)


def _run(args: flags.FlagValues) -> int:
    out_dir = Path(tempfile.mkdtemp()) if args.quick else RESULTS
    results, failed, codes = {}, [], [cli.OK]
    for name in args.only or BENCHMARKS:
        module, full, quick = BENCHMARKS[name]
        out = out_dir / f"{name}.json"
        command = [sys.executable, "-m", module, *(quick if args.quick else full), "--out", str(out),
                   *(["--allow_contended"] if args.allow_contended else [])]
        print(f"== {name}: {' '.join(command[1:])}", flush=True)
        start = time.time()
        code = subprocess.run(command).returncode
        if code != cli.OK:
            failed.append(name)
            codes.append(code if code > 0 else cli.INTERNAL_ERROR)  # < 0: killed by a signal
            continue
        results[name] = json.loads(out.read_text())
        print(f"== {name}: {time.time() - start:.0f} s", flush=True)
    committed = RESULTS / "all.json"
    before = json.loads(committed.read_text()) if committed.is_file() else {"benchmarks": {}}
    if args.only and not args.quick:  # a partial rerun keeps the others' committed results
        results = {**before["benchmarks"], **results}
    summary = {"machine": {"platform": platform.platform(), "python": platform.python_version(),
                           "processor": platform.processor()},
               "quick": args.quick, "failed": failed, "benchmarks": results}
    (out_dir / "all.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(table(results))
    moved = hygiene.moved(before, summary)
    print(f"figures that moved more than {hygiene.MOVED_BY:.0%} from the committed run:"
          + "".join(f"\n  {line}" for line in moved) if moved else
          f"no figure moved more than {hygiene.MOVED_BY:.0%} from the committed run.")
    print(f"wrote {out_dir / 'all.json'}" + (f"; FAILED: {failed}" if failed else ""))
    return max(codes)  # a failed benchmark's code (the worst of several)


main = cli.binary(define_flags, _run)


if __name__ == "__main__":
    cli.run_main(main)
