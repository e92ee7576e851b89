"""Where our train step's time goes: XLA's own per-operation profile of the compiled step,
grouped by what each operation computes.

    .venv/bin/python -m experiments.benchmarks.step_profile [--variant runlocal] [--steps 3]
        [--out FILE.json] [--allow_contended]

The step is train_speed's (the full gcc_yfcc model by default, float32, batch 8, K=3,
texts trimmed as the trainer does). It is traced with jax.profiler for --steps steps after
a warm-up; every operation the CPU runtime executed (a fusion, a matmul, a copy) is
matched with its instruction in the compiled HLO, whose metadata names the model code it
came from. Each is put in one kind:

  matmul      dot instructions and XNNPACK/YNNPACK fusions (a matmul with what XLA fused
              into it), but for those of attention's core:
  attention   inside an attention module, the products of queries with keys and of
              weights with values and the softmax between them, fused or not (on this
              CPU, YNNPACK fuses a product with the softmax's reductions, or all three)
  gelu        the exact GELU (erf, erfc) and its derivative
  softmax     the grouping's assignment softmax
  norm        LayerNorm / BatchNorm statistics and scaling
  embedding   the token table's gather and its scatter-add gradient
  layout      transposes and copies (head splits, weight-gradient operands)
  optimizer   anything outside the forward and backward passes: clipping, AdamW
  other       the rest (residual adds, Gumbel noise, losses, stochastic depth)

and in one pass: forward, backward (XLA's transpose of the forward), update, or unknown
(instructions XLA added with no source, such as the images' layout change). Times are
seconds per step summed over the operations: an operation split over XLA's threads counts
once, two that ran at the same time both count, so the sum is close to the step's wall
time, not its CPU time. Writes results/step_profile.json
(refused there when the run was contended: experiments.benchmarks.hygiene).
"""
from __future__ import annotations

import collections
import datetime
import re
import tempfile
from pathlib import Path

from absl import flags

from experiments.benchmarks import hygiene
from input_pipeline import cli

DEFAULT_OUT = hygiene.RESULTS / "step_profile.json"
PASSES = ("forward", "backward", "update", "unknown")
KINDS = ("matmul", "attention", "gelu", "softmax", "norm", "embedding", "layout", "optimizer",
         "other")
_INSTRUCTION = re.compile(r"^\s*%?([\w.\-]+) = [^=]*?\b(\w[\w\-]*)\(.*?op_name=\"([^\"]*)\"")
_RUNTIME_WRAPPERS = ("ThunkExecutor", "SlinkyThreadPool", "end: ")


def instructions(hlo_text: str) -> dict[str, tuple[str, str]]:
    """instruction name -> (opcode, op_name of its metadata) in a compiled module's text."""
    found = {}
    for line in hlo_text.splitlines():
        match = _INSTRUCTION.match(line)
        if match:
            found[match.group(1)] = (match.group(2), match.group(3))
    return found


def pass_of(op_name: str) -> str:
    if not op_name:  # an instruction XLA made without a source (a layout change, say)
        return "unknown"
    if "transpose(jvp(" in op_name:
        return "backward"
    return "forward" if "jvp(" in op_name else "update"


_ATTENTION_PROJECTIONS = ("qkv", "q", "k", "v", "proj")
_SOFTMAX_STEPS = ("exp", "reduce_max", "reduce_sum", "div", "sub", "max", "stop_gradient",
                  "select_n")


def _attention_core(op_name: str) -> bool:
    """Under an attention module (".../attn/...") and not one of its dense projections."""
    if "/attn/" not in op_name:
        return False
    inside = op_name.split("/attn/", 1)[1].split("/", 1)[0]
    return inside not in _ATTENTION_PROJECTIONS


def kind_of(name: str, opcode: str, op_name: str) -> str:
    """The kind (module docstring) of the executed operation `name`."""
    last = op_name.rsplit("/", 1)[-1]
    if opcode == "dot" or name.startswith(("ynn_fusion", "xnn_fusion", "dot")):
        return "attention" if _attention_core(op_name) else "matmul"
    if name.startswith(("copy", "transpose")) or last in ("transpose", "copy"):
        return "layout"
    if pass_of(op_name) == "update":
        return "optimizer"
    if "token_embed" in op_name:
        return "embedding"
    if "erf" in last or "/mlp/" in op_name and last in ("mul", "add", "add_any", "exp", "neg"):
        return "gelu"
    if last in _SOFTMAX_STEPS:
        if _attention_core(op_name):
            return "attention"
        if "/assign/" in op_name:
            return "softmax"
    if "norm" in op_name:
        return "norm"
    return "other"


def executed_ops(trace_dir: Path) -> collections.Counter:
    """Seconds per executed operation name, from the trace's XLA worker threads."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    files = sorted(trace_dir.rglob("*.xplane.pb"))
    if not files:
        raise FileNotFoundError(f"no *.xplane.pb written under {trace_dir}")
    space = xplane_pb2.XSpace()
    space.ParseFromString(files[-1].read_bytes())
    seconds = collections.Counter()
    for plane in space.planes:
        names = {key: meta.name for key, meta in plane.event_metadata.items()}
        for line in plane.lines:
            if "XLAEigen" not in line.name:  # the threads that run the compiled step
                continue
            for event in line.events:
                name = names.get(event.metadata_id, "")
                if not name.startswith(_RUNTIME_WRAPPERS):
                    seconds[name] += event.duration_ps * 1e-12
    return seconds


def profile(seconds: collections.Counter, hlo: dict[str, tuple[str, str]], steps: int) -> dict:
    table = {kind: collections.Counter() for kind in KINDS}
    top = []
    for name, total in seconds.items():
        opcode, op_name = hlo.get(name, ("", ""))
        kind = kind_of(name, opcode, op_name)
        table[kind][pass_of(op_name)] += total / steps
        top.append((total / steps, name, kind, op_name))
    total = sum(sum(c.values()) for c in table.values())
    top.sort(reverse=True)
    return {
        "op_s_per_step": total,
        "kinds": {kind: {"op_s": sum(c.values()), "share": sum(c.values()) / total,
                         **{p: c[p] for p in PASSES}}
                  for kind, c in table.items()},
        "top_non_matmul": [{"op_s": s, "op": n, "kind": k, "source": o}
                           for s, n, k, o in top if k != "matmul"][:20],
    }


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("variant", None, "config variant of configs/gcc_yfcc_2stage.py "
                        "(default: the full model)", flag_values=fv)
    flags.DEFINE_integer("steps", 3, "traced steps", lower_bound=1, flag_values=fv)
    flags.DEFINE_string("out", None, f"JSON path; default {DEFAULT_OUT} (--variant: the "
                        "temporary folder)", flag_values=fv)
    hygiene.define_flags(fv)


def _run(args: flags.FlagValues) -> int:
    import jax

    from experiments.benchmarks.train_speed import (BATCH, OurStep, jitted_of, load_recipe,
                                                    model_config)

    recipe = load_recipe(args.variant)
    step = OurStep(recipe, model_config(recipe), [jax.devices("cpu")[0]], BATCH)
    jitted, mesh = jitted_of(step.run)
    with jax.set_mesh(mesh):
        hlo = instructions(jitted.lower(step.state, step.batch, step.text_lengths)
                           .compile().as_text())
    step()
    step()  # compiled and warm
    load = hygiene.OutsideLoad()
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp):
            for _ in range(args.steps):
                step()
        result = profile(executed_ops(Path(tmp)), hlo, args.steps)
    print(f"{'kind':10s} {'s/step':>10s} {'share':>6s} " + " ".join(f"{p:>8s}" for p in PASSES))
    for kind, row in result["kinds"].items():
        print(f"{kind:10s} {row['op_s']:10.3f} {row['share']:6.1%} "
              + " ".join(f"{row[p]:8.3f}" for p in PASSES))
    print(f"{'all':10s} {result['op_s_per_step']:10.3f}")
    result.update(benchmark="step_profile", variant=args.variant or "", steps=args.steps,
                  time=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  jax=jax.__version__)
    out = Path(args.out) if args.out else (
        Path(tempfile.gettempdir()) / DEFAULT_OUT.name if args.variant else DEFAULT_OUT)
    return hygiene.finish(result, load, out, args.allow_contended, args.steps)


main = cli.binary(define_flags, _run)


if __name__ == "__main__":
    cli.run_main(main)
