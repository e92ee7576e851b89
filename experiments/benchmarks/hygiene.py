"""The rules every benchmark run follows: repeated figures, outside load, comparisons.

- Each figure is timed at least MIN_RUNS times; `spread` gives its min / median / max.
- The CPU time other processes take during a run is measured (`OutsideLoad`). A run
  where it exceeds MAX_OUTSIDE_SHARE of the machine is `contended`: `finish` refuses to
  write it into results/ (the committed record) unless --allow_contended is given.
- `moved` names the figures of a new run that differ from the committed run by more
  than MOVED_BY (run_all prints them).
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

from absl import flags

from input_pipeline import cli

RESULTS = Path(__file__).parent / "results"
MIN_RUNS = 3
MAX_OUTSIDE_SHARE = 0.10
MOVED_BY = 0.15


class OutsideLoad:
    """CPU time other processes used while the benchmark ran, from /proc/stat."""

    def __init__(self):
        self.hz = os.sysconf("SC_CLK_TCK")
        self.start = self._sample()

    def _sample(self):
        try:
            fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
            values = [int(x) for x in fields]
            busy = sum(values) - values[3] - values[4]        # all but idle and iowait
        except (OSError, ValueError, IndexError):
            busy = None
        t = os.times()
        # Children count too: run_all's and eval_speed's measurements run in subprocesses.
        own = t.user + t.system + t.children_user + t.children_system
        return busy, own, time.perf_counter()

    def report(self) -> dict:
        busy1, own1, wall1 = self._sample()
        busy0, own0, wall0 = self.start
        wall = wall1 - wall0
        if busy0 is None or busy1 is None:
            return {"wall_s": wall, "outside_cpu_s": None, "outside_share": None}
        return outside_report(wall, own1 - own0, (busy1 - busy0) / self.hz, os.cpu_count() or 1)


def outside_report(wall_s: float, own_cpu_s: float, busy_cpu_s: float, cpus: int) -> dict:
    """The outside load from the machine's busy CPU seconds and this process tree's own."""
    outside = max(busy_cpu_s - own_cpu_s, 0.0)
    return {"wall_s": wall_s, "own_cpu_s": own_cpu_s, "outside_cpu_s": outside,
            "outside_share": outside / (wall_s * cpus)}


def is_contended(outside_share: float | None) -> bool:
    """More than MAX_OUTSIDE_SHARE of the machine went to other processes (or the load
    could not be measured, which proves nothing idle)."""
    return outside_share is None or outside_share > MAX_OUTSIDE_SHARE


def spread(values) -> dict:
    """min / median / max of a figure's repeated measurements, and how many there were."""
    values = list(values)
    return {"min": min(values), "median": statistics.median(values), "max": max(values),
            "runs": len(values)}


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_bool("allow_contended", False, "write a contended run into results/ anyway "
                      f"(outside load above {MAX_OUTSIDE_SHARE:.0%})", flag_values=fv)


def finish(result: dict, load: OutsideLoad, out, allow_contended: bool,
           runs: int | None = None, record: Path = RESULTS) -> int:
    """Records the outside load and the verdict in `result` and writes it to `out`;
    refuses (usage error) to put a contended run, or one of fewer than MIN_RUNS repeats,
    into the `record` folder unless allow_contended."""
    report = load.report()
    contended = is_contended(report["outside_share"])
    result.update(outside_load=report, contended=contended)
    share = report["outside_share"]
    print("outside load: " + ("not measurable" if share is None else
                              f"other processes used {share:.1%} of the CPU")
          + (" -- CONTENDED" if contended else ""))
    problems = []
    if contended:
        problems.append(f"outside load above {MAX_OUTSIDE_SHARE:.0%}")
    if runs is not None and runs < MIN_RUNS:
        problems.append(f"{runs} runs per figure, fewer than {MIN_RUNS}")
    in_record = Path(out).resolve().is_relative_to(Path(record).resolve())
    if problems and in_record and not allow_contended:
        print(f"refused to write {out}: {'; '.join(problems)}. results/ keeps idle runs of "
              f">= {MIN_RUNS} repeats; rerun on an idle machine, pass --out elsewhere, or "
              "--allow_contended.", file=sys.stderr)
        return cli.USAGE_ERROR
    cli.write_json(result, out, default=str)
    return cli.OK


def rows(result: dict) -> list[tuple[str, dict]]:
    """(row name, row) pairs: benchmarks keep rows as a list or as a name -> row dict."""
    found = result.get("rows") or result.get("runs") or []
    if isinstance(found, dict):
        return list(found.items())
    return [(str(row.get("name") or ", ".join(f"{k}={v}" for k, v in row.items()
                                             if isinstance(v, str))), row) for row in found]


def figures(all_results: dict) -> dict[str, float]:
    """Every numeric figure of an all.json's benchmarks as {"bench/row/key": value}."""
    out = {}
    for bench, result in all_results.get("benchmarks", {}).items():
        for name, row in rows(result):
            for key, value in row.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    out[f"{bench}/{name}/{key}"] = float(value)
    return out


def moved(old: dict, new: dict, by: float = MOVED_BY) -> list[str]:
    """The figures in both runs whose new value differs from the old by more than `by`
    (relative), as 'name: old -> new (+x%)' lines."""
    before, after = figures(old), figures(new)
    lines = []
    for name in sorted(set(before) & set(after)):
        a, b = before[name], after[name]
        if a == b:
            continue
        change = (b - a) / abs(a) if a else float("inf")
        if abs(change) > by:
            lines.append(f"{name}: {a:.4g} -> {b:.4g} ({change:+.0%})")
    return lines
