"""Speed of our JAX GroupViT against Hugging Face's PyTorch GroupViTModel on CPU.

Run from the repository root:

    .venv/bin/python -m experiments.benchmarks.model_speed [--out FILE.json] [--repeats N] [--quick]

One run, one machine, one configuration (the default GroupViTConfig, i.e. HF's
GroupViTConfig(); both models carry the SAME converted random weights), float32:

  1. eval fwd 224 b8    our jitted encode_image + encode_text (8 images, 8 captions
                        of 77 tokens) vs HF vision_model + visual_projection and
                        text_model + text_projection under torch.no_grad().
  2. train fwd+bwd b8   jax.jit(jax.value_and_grad(loss)) with train=True (Gumbel noise,
                        stochastic depth, BatchNorm batch statistics) vs HF in train()
                        mode with loss.backward(); the loss is the CLIP-style symmetric
                        image-text contrastive loss on L2-normalised projected embeddings.
  3. window 448 b1      our segmentation window on its own: ONE jitted encode_image pass
                        at 448x448 giving the soft maps and segment embeddings (HF: the
                        same work with interpolated position embeddings, for reference).
  4. matmul ceiling     a jitted float32 2048x2048 @ 2048x2048 (and torch's, for reference).

FLOPs per step come from XLA's cost analysis of each of our compiled functions;
achieved FLOP/s is shown against the measured matmul ceiling.

Targets: train fwd+bwd >= 1.3x HF, eval fwd >= 1.5x HF, 448 window <= 0.2 s
(the original code runs the tower twice per window and took 0.44 s on this machine type).

Torch uses torch.set_num_threads(os.cpu_count()); JAX uses its default CPU thread
pool. Every function is warmed up (compiled) before timing; JAX timings block on the
result; our runs and HF's are interleaved and each figure is the median of --repeats
runs (--quick: 2 repeats, a smoke run); the JSON also keeps every run and the minima.
Results print as a table and are written as JSON (default
experiments/benchmarks/results/model_speed.json) with machine information.

Run it on an IDLE machine: the script reports how much CPU other processes took during
the run. On a shared 2-core machine torch's OpenMP threads slow down several times more
than XLA's thread pool when another process holds a core, which inflates our speed-ups.
"""
from __future__ import annotations

import datetime
import os
import platform
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
import transformers
from absl import flags

from groupvit_jax.checkpoints import torch_layout
from groupvit_jax.models.model import GroupViT
from groupvit_jax.checkpoints.torch_io import hf_config
from experiments.benchmarks import hygiene
from input_pipeline import cli

DEFAULT_OUT = Path(__file__).parent / "results" / "model_speed.json"
BATCH = 8
TRAIN_SIZE = 224
WINDOW_SIZE = 448
CONTEXT = 77
MATMUL_N = 2048
TARGETS = {"eval_fwd_224_b8": ("speed_up", ">=", 1.5),
           "train_fwd_bwd_b8": ("speed_up", ">=", 1.3),
           "window_448_b1": ("ours_s_per_step", "<=", 0.2)}


# ----------------------------------------------------------------------------- set-up

def machine_info() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu_model": cpu, "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "jax": jax.__version__,
            "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else None,
            "torch": torch.__version__, "transformers": transformers.__version__,
            "torch_num_threads": torch.get_num_threads(),
            "jax_devices": [str(d) for d in jax.devices()],
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}


def build_models(seed: int = 0):
    """A random HF GroupViTModel with the default config and our conversion of it."""
    torch.manual_seed(seed)
    hf = transformers.GroupViTModel(transformers.GroupViTConfig()).eval()
    state = {k: v.detach().numpy().copy() for k, v in hf.state_dict().items()}
    config = hf_config(hf.config.to_dict())
    variables = torch_layout.from_torch(state, config, torch_layout.HF)
    variables = jax.tree.map(jnp.asarray, {"params": variables["params"],
                                           "batch_stats": variables.get("batch_stats", {})})
    return hf, GroupViT(config), variables


def make_inputs(batch: int, size: int, seed: int = 0):
    """ImageNet-normalised-looking images [B, H, W, 3] and full-length caption ids [B, 77]."""
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((batch, size, size, 3)).astype(np.float32)
    tokens = rng.integers(1, 49406, (batch, CONTEXT)).astype(np.int32)
    tokens[:, 0], tokens[:, -1] = 49406, 49407
    return images, tokens


def to_torch(images: np.ndarray, tokens: np.ndarray):
    return (torch.from_numpy(images.transpose(0, 3, 1, 2).copy()),
            torch.from_numpy(tokens.astype(np.int64)))


# ----------------------------------------------------------------------------- timing

def paired_times(ours, theirs, repeats: int, warmup: int = 1) -> tuple[list[float], list[float]]:
    """Wall times of ours() and theirs(), interleaved (ours, theirs, ours, ...).

    Both must block until their result is ready. Interleaving makes a burst of outside
    load hit both sides alike; it matters because torch's OpenMP threads slow down far
    more than XLA's thread pool when another process takes a core.
    """
    for _ in range(warmup):
        ours()
        theirs()
    ours_times, their_times = [], []
    for _ in range(repeats):
        for fn, times in ((ours, ours_times), (theirs, their_times)):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return ours_times, their_times


def jax_runner(jitted, *args):
    return lambda: jax.block_until_ready(jitted(*args))


def xla_flops(jitted, *args) -> float | None:
    """FLOPs of one call from XLA's cost analysis (a dict, or a list of dicts in older jax)."""
    cost = jitted.lower(*args).compile().cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:
        return None
    return float(cost["flops"])


# ----------------------------------------------------------------------------- losses

def contrastive_loss_jax(image_embeds, text_embeds, logit_scale):
    img = image_embeds / jnp.linalg.norm(image_embeds, axis=-1, keepdims=True)
    txt = text_embeds / jnp.linalg.norm(text_embeds, axis=-1, keepdims=True)
    logits = jnp.minimum(jnp.exp(logit_scale), 100.0) * img @ txt.T
    labels = jnp.arange(logits.shape[0])
    return 0.5 * (optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
                  + optax.softmax_cross_entropy_with_integer_labels(logits.T, labels).mean())


def contrastive_loss_torch(image_embeds, text_embeds, logit_scale):
    img = torch.nn.functional.normalize(image_embeds, dim=-1)
    txt = torch.nn.functional.normalize(text_embeds, dim=-1)
    logits = logit_scale.exp().clamp(max=100.0) * img @ txt.t()
    labels = torch.arange(logits.shape[0])
    return 0.5 * (torch.nn.functional.cross_entropy(logits, labels)
                  + torch.nn.functional.cross_entropy(logits.t(), labels))


# ----------------------------------------------------------------------------- our steps

def our_eval_step(module):
    def step(variables, images, tokens):
        img = module.apply(variables, images, method="encode_image")["image_embeds"]
        txt = module.apply(variables, tokens, method="encode_text")["text_embeds"]
        return img, txt
    return jax.jit(step)


def our_image_only(module):
    return jax.jit(lambda v, images: module.apply(v, images, method="encode_image")["image_embeds"])


def our_text_only(module):
    return jax.jit(lambda v, tokens: module.apply(v, tokens, method="encode_text")["text_embeds"])


def our_train_step(module):
    """Forward + backward of the contrastive loss in training mode; returns loss, grads, stats."""
    def loss_fn(params, batch_stats, images, tokens, key):
        gumbel, droppath = jax.random.split(key)
        variables = {"params": params, "batch_stats": batch_stats}
        rngs = {"gumbel": gumbel, "droppath": droppath}
        img, state = module.apply(variables, images, True, method="encode_image", rngs=rngs,
                                  mutable=["batch_stats"])
        txt, state2 = module.apply({"params": params, "batch_stats": state["batch_stats"]},
                                   tokens, True, method="encode_text", rngs=rngs,
                                   mutable=["batch_stats"])
        loss = contrastive_loss_jax(img["image_embeds"], txt["text_embeds"],
                                    params["logit_scale"])
        return loss, state2["batch_stats"]

    return jax.jit(jax.value_and_grad(loss_fn, has_aux=True))


def our_window(module):
    def window(variables, image):
        out = module.apply(variables, image, method="encode_image")
        return {"soft_maps": out["soft_maps"], "segment_embeds": out["segment_embeds"]}
    return jax.jit(window)


# ----------------------------------------------------------------------------- HF steps

def hf_eval_step(hf, pixels, ids):
    def step():
        with torch.no_grad():
            img = hf.visual_projection(hf.vision_model(pixel_values=pixels).pooler_output)
            txt = hf.text_projection(hf.text_model(input_ids=ids).pooler_output)
        return img, txt
    return step


def hf_image_only(hf, pixels):
    def step():
        with torch.no_grad():
            return hf.visual_projection(hf.vision_model(pixel_values=pixels).pooler_output)
    return step


def hf_text_only(hf, ids):
    def step():
        with torch.no_grad():
            return hf.text_projection(hf.text_model(input_ids=ids).pooler_output)
    return step


def hf_train_step(hf, pixels, ids):
    def step():
        hf.zero_grad(set_to_none=True)
        img = hf.visual_projection(hf.vision_model(pixel_values=pixels).pooler_output)
        txt = hf.text_projection(hf.text_model(input_ids=ids).pooler_output)
        loss = contrastive_loss_torch(img, txt, hf.logit_scale)
        loss.backward()
        return loss
    return step


def hf_window(hf, pixel):
    """The same work as our window: interpolated position embeddings, soft maps, segments."""
    vision = hf.vision_model

    def step():
        with torch.no_grad():
            x = vision.embeddings(pixel, interpolate_pos_encoding=True)
            enc = vision.encoder(hidden_states=x, output_attentions=True, return_dict=True)
            seg = vision.layernorm(enc.last_hidden_state)
            b, s, c = seg.shape
            embeds = hf.visual_projection(seg.reshape(b * s, c)).reshape(b, s, -1)
        return enc.attentions, embeds
    return step


# ----------------------------------------------------------------------------- benchmarks

def row(name, batch, ours_s, hf_s, flops, ceiling_flops_per_s=None, extra=None):
    achieved = flops / ours_s if flops else None
    return {"name": name, "batch": batch,
            "ours_s_per_step": ours_s, "hf_s_per_step": hf_s,
            "ours_img_per_s": batch / ours_s if batch else None,
            "hf_img_per_s": batch / hf_s if (batch and hf_s) else None,
            "speed_up": hf_s / ours_s if hf_s else None,
            "gflop_per_step": flops / 1e9 if flops else None,
            "achieved_gflop_per_s": achieved / 1e9 if achieved else None,
            "fraction_of_ceiling": (achieved / ceiling_flops_per_s
                                    if achieved and ceiling_flops_per_s else None),
            **(extra or {})}


def add_minima(r: dict) -> dict:
    """Fastest and slowest single runs beside the medians (the fastest is the
    contention-robust figure)."""
    for side in ("ours", "hf"):
        times = r.get(f"{side}_times")
        r[f"{side}_min_s"] = min(times) if times else None
        r[f"{side}_max_s"] = max(times) if times else None
    return r


def timed_row(name, batch, ours, theirs, repeats, flops, ceiling, warmup=1, extra=None):
    ours_times, hf_times = paired_times(ours, theirs, repeats, warmup)
    return add_minima(row(name, batch, statistics.median(ours_times), statistics.median(hf_times),
                          flops, ceiling, {"ours_times": ours_times, "hf_times": hf_times,
                                           **(extra or {})}))


def bench_matmul(repeats: int) -> dict:
    n = MATMUL_N
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    mm = jax.jit(jnp.matmul)
    ta, tb = torch.from_numpy(np.array(a)), torch.from_numpy(np.array(b))
    flops = 2.0 * n**3
    r = timed_row(f"matmul ceiling {n}^3", None, jax_runner(mm, a, b), lambda: ta @ tb,
                  repeats, flops, None, warmup=2,
                  extra={"xla_flops": xla_flops(mm, a, b),
                         "note": "HF column: torch matmul of the same size"})
    r["torch_gflop_per_s"] = flops / r["hf_s_per_step"] / 1e9
    r["fraction_of_ceiling"] = 1.0
    return r


def bench_eval(module, variables, hf, images, tokens, repeats, ceiling) -> tuple[dict, dict]:
    pixels, ids = to_torch(images, tokens)
    step = our_eval_step(module)
    main = timed_row("eval fwd 224 b8", len(images),
                     jax_runner(step, variables, images, tokens), hf_eval_step(hf, pixels, ids),
                     repeats, xla_flops(step, variables, images, tokens), ceiling)
    # Per-tower breakdown, to see where time goes.
    img_fn, txt_fn = our_image_only(module), our_text_only(module)
    parts = {
        "image_tower+head": timed_row("eval image b8", len(images),
                                      jax_runner(img_fn, variables, images),
                                      hf_image_only(hf, pixels), repeats,
                                      xla_flops(img_fn, variables, images), ceiling),
        "text_tower+head": timed_row("eval text b8", len(images),
                                     jax_runner(txt_fn, variables, tokens),
                                     hf_text_only(hf, ids), repeats,
                                     xla_flops(txt_fn, variables, tokens), ceiling),
    }
    return main, parts


def bench_train(module, variables, hf, images, tokens, repeats, ceiling) -> dict:
    pixels, ids = to_torch(images, tokens)
    step = our_train_step(module)
    args = (variables["params"], variables["batch_stats"], images, tokens, jax.random.key(0))
    hf.train()
    try:
        return timed_row("train fwd+bwd b8", len(images), jax_runner(step, *args),
                         hf_train_step(hf, pixels, ids), repeats, xla_flops(step, *args), ceiling)
    finally:
        hf.zero_grad(set_to_none=True)
        hf.eval()


def bench_window(module, variables, hf, repeats, ceiling) -> dict:
    image, _ = make_inputs(1, WINDOW_SIZE, seed=1)
    pixel, _ = to_torch(image, np.zeros((1, CONTEXT), np.int32))
    fn = our_window(module)
    return timed_row("window 448 b1", 1, jax_runner(fn, variables, image), hf_window(hf, pixel),
                     repeats, xla_flops(fn, variables, image), ceiling,
                     extra={"note": "HF column: same work (interpolated pos-embed, soft maps, "
                                    "segment embeds)"})


# ----------------------------------------------------------------------------- report

COLUMNS = [("", "name", "{}", 22), ("ours s/step", "ours_s_per_step", "{:.4f}", 12),
           ("HF s/step", "hf_s_per_step", "{:.4f}", 10),
           ("ours img/s", "ours_img_per_s", "{:.2f}", 11),
           ("HF img/s", "hf_img_per_s", "{:.2f}", 9), ("speed-up", "speed_up", "{:.2f}x", 9),
           ("GFLOP/step", "gflop_per_step", "{:.2f}", 11),
           ("achieved GFLOP/s", "achieved_gflop_per_s", "{:.1f}", 17),
           ("% of ceiling", "fraction_of_ceiling", "{:.1%}", 13)]


def rescale_to_ceiling(rows: list[dict], ceiling_flops_per_s: float) -> None:
    for r in rows:
        if r.get("achieved_gflop_per_s"):
            r["fraction_of_ceiling"] = r["achieved_gflop_per_s"] * 1e9 / ceiling_flops_per_s


def format_table(rows: list[dict]) -> str:
    def cell(r, key, fmt, width):
        if key == "name":
            return str(r[key]).ljust(width)
        v = r.get(key)
        return ("-" if v is None else fmt.format(v)).rjust(width)

    header = " ".join(h.rjust(w) if k != "name" else h.ljust(w) for h, k, _, w in COLUMNS)
    lines = [header, "-" * len(header)]
    lines += [" ".join(cell(r, k, f, w) for _, k, f, w in COLUMNS) for r in rows]
    return "\n".join(lines)


def check_targets(rows: list[dict]) -> dict:
    by_key = {"eval_fwd_224_b8": rows[0], "train_fwd_bwd_b8": rows[1], "window_448_b1": rows[2]}
    out = {}
    for key, (field, op, bound) in TARGETS.items():
        value = by_key[key][field]
        ok = value >= bound if op == ">=" else value <= bound
        out[key] = {"metric": field, "target": f"{op} {bound}", "value": value, "met": bool(ok)}
    return out


def define_speed_flags(fv: flags.FlagValues, default_out: Path, timed: str) -> None:
    """The speed benchmarks' shared flags: --out, --repeats, --quick, --allow_contended."""
    flags.DEFINE_string("out", str(default_out), "JSON results path", flag_values=fv)
    flags.DEFINE_integer("repeats", 5, f"{timed} per figure (median, min and max)",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_bool("quick", False, "smoke run: 2 repeats (results/ refuses it)",
                      flag_values=fv)
    hygiene.define_flags(fv)


def define_flags(fv: flags.FlagValues) -> None:
    define_speed_flags(fv, DEFAULT_OUT, "timed runs")


def _run(args: flags.FlagValues) -> int:
    out, repeats = Path(args.out), 2 if args.quick else args.repeats

    torch.set_num_threads(os.cpu_count())
    info = machine_info()
    print(f"CPU: {info['cpu_model']} ({info['cpu_count']} cores); torch threads set to "
          f"{torch.get_num_threads()} (os.cpu_count()); JAX: default CPU thread pool; "
          f"jax {info['jax']}, torch {info['torch']}; float32; median of {repeats} runs.")

    hf, module, variables = build_models()
    images, tokens = make_inputs(BATCH, TRAIN_SIZE)
    load = hygiene.OutsideLoad()

    # The ceiling is measured before and after the model runs; the faster of the two is
    # used, so a burst of outside load during one measurement does not inflate the ratios.
    first = bench_matmul(repeats)
    ceiling = first["achieved_gflop_per_s"] * 1e9
    print(f"matmul ceiling: {first['achieved_gflop_per_s']:.1f} GFLOP/s (jax), "
          f"{first['torch_gflop_per_s']:.1f} GFLOP/s (torch)", flush=True)
    eval_row, parts = bench_eval(module, variables, hf, images, tokens, repeats, ceiling)
    print(f"eval fwd: ours {eval_row['ours_s_per_step']:.3f} s, "
          f"HF {eval_row['hf_s_per_step']:.3f} s", flush=True)
    train_row = bench_train(module, variables, hf, images, tokens, repeats, ceiling)
    print(f"train fwd+bwd: ours {train_row['ours_s_per_step']:.3f} s, "
          f"HF {train_row['hf_s_per_step']:.3f} s", flush=True)
    window_row = bench_window(module, variables, hf, repeats, ceiling)
    last = bench_matmul(repeats)
    matmul = max(first, last, key=lambda r: r["achieved_gflop_per_s"])
    matmul["ceiling_gflop_per_s_start_end"] = [first["achieved_gflop_per_s"],
                                               last["achieved_gflop_per_s"]]
    rescale_to_ceiling([eval_row, train_row, window_row, *parts.values()],
                       matmul["achieved_gflop_per_s"] * 1e9)
    share = load.report()["outside_share"]
    rows = [eval_row, train_row, window_row, matmul]

    print()
    print(format_table(rows))
    print("\nper-tower eval breakdown:")
    print(format_table(list(parts.values())))
    targets = check_targets(rows)
    print(f"\nmatmul ceiling at start / end: "
          f"{matmul['ceiling_gflop_per_s_start_end'][0]:.1f} / "
          f"{matmul['ceiling_gflop_per_s_start_end'][1]:.1f} GFLOP/s (the faster is used).")
    contended = hygiene.is_contended(share)
    print("\ntargets" + (" (CONTENDED run: verdicts not meaningful)" if contended else "") + ":")
    for key, t in targets.items():
        t["contended"] = contended
        print(f"  {key}: {t['metric']} = {t['value']:.3f} (target {t['target']}): "
              f"{'met' if t['met'] else 'MISSED'}")

    result = {"machine": info, "repeats": repeats, "batch": BATCH, "dtype": "float32",
              "config": "default GroupViTConfig (HF GroupViTConfig())",
              "rows": rows, "eval_breakdown": parts, "targets": targets}
    print()
    return hygiene.finish(result, load, out, args.allow_contended, repeats)


main = cli.binary(define_flags, _run)


if __name__ == "__main__":
    cli.run_main(main)
