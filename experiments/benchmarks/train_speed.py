"""Speed of our whole GroupViT train step against the same step in PyTorch (HF towers).

Run from the repository root:

    .venv/bin/python -m experiments.benchmarks.train_speed [--out FILE.json] [--repeats N] [--quick]

One run on this machine's CPU, float32, global batch 8, K=3 prompts per image, for two
model sizes from configs/gcc_yfcc_2stage.py: `:runlocal` (the tiny model) and the full
`gcc_yfcc` model (get_config(None)).

  ours   the real `train_step.make_train_step` on a 1-device mesh: Gumbel noise, stochastic
         depth, BatchNorm batch statistics, both contrastive losses (captions and prompts at
         their trimmed lengths through the text tower, together through the projector),
         global-norm clipping at 5.0, AdamW on the recipe's schedule, the state donated. Batch from `synthetic_batch`.
  torch  Hugging Face GroupViTModel towers and projectors of the SAME architecture
         (checked by converting the HF config back to ours) in train() mode, i.e. with
         HF's Gumbel noise; the same two losses written in torch below (HF has no
         stochastic depth, our step has); a separate multi-label temperature;
         clip_grad_norm_(5.0); torch.optim.AdamW(lr 1e-3, betas (0.9, 0.999), eps 1e-8,
         weight decay 0.05 on the parameters our decay mask decays).

Reported per size: s/step, steps/s and images/s of each, the speed-up ours/torch, FLOPs
per step from XLA's cost analysis of our compiled step, achieved GFLOP/s and its share of a
measured float32 matmul ceiling. Target: speed-up >= 1.3x at the full model.

On a GPU host (jax.default_backend() == "gpu") the CPU rows still run on the CPU device,
and one more row times our full model in bfloat16 at batch 256 per device on all GPUs:
images/s per device and MFU (cost-analysis FLOPs per device / step time / a measured
bfloat16 matmul ceiling). Elsewhere that row is reported as skipped.

Every step is warmed up (compiled) before timing; our steps block on the returned state
and metrics; ours and torch's runs are interleaved and each figure is the median of
--repeats runs (--quick: 2 repeats, a smoke run); the JSON (default
experiments/benchmarks/results/train_speed.json) keeps every run, the minima and the
machine. Run it on an IDLE machine: the script reports the CPU other processes took.
"""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import torch
import transformers
from absl import flags

from experiments.benchmarks import hygiene
from experiments.benchmarks.model_speed import define_speed_flags, machine_info, paired_times
from groupvit_jax.train import sharding
from groupvit_jax.train import recipe as recipe_lib
from groupvit_jax.train import step as train_step
from groupvit_jax.models.config import GroupViTConfig
from groupvit_jax.train.config_files import load_config
from groupvit_jax.train.optim import make_optimizer
from input_pipeline.synthetic_data import synthetic_batch
from groupvit_jax.checkpoints.torch_io import hf_config
from input_pipeline import cli

ROOT = Path(__file__).resolve().parents[2]
CONFIG_FILE = ROOT / "configs" / "gcc_yfcc_2stage.py"
DEFAULT_OUT = Path(__file__).parent / "results" / "train_speed.json"
BATCH = 8
NUM_PROMPTS = 3
SIZES = (("runlocal", "runlocal"), ("full gcc_yfcc", None))   # (row name, config variant)
TARGET_SPEED_UP = 1.3                                       # at the full model
GPU_BATCH_PER_DEVICE = 256
CPU_MATMUL_N, GPU_MATMUL_N = 2048, 8192
TORCH_OPT = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05)
CLIP_NORM = 5.0


# ----------------------------------------------------------------------------- configs

def load_recipe(variant):
    """get_config(variant) of configs/gcc_yfcc_2stage.py (configs/ is not a package)."""
    return load_config(CONFIG_FILE, variant)


def model_config(recipe, **overrides) -> GroupViTConfig:
    return GroupViTConfig.from_dict(recipe.model.to_dict()).replace(**overrides)


def hf_config_dict(cfg: GroupViTConfig) -> dict:
    """Our architecture as a Hugging Face GroupViTConfig's arguments."""
    v, t = cfg.vision, cfg.text
    outputs = list(v.num_output_groups)
    return {
        "vision_config": dict(
            hidden_size=v.width, intermediate_size=int(v.width * v.mlp_ratio),
            depths=list(v.depths), num_hidden_layers=sum(v.depths),
            num_attention_heads=v.num_heads, num_group_tokens=list(v.num_group_tokens),
            num_output_groups=outputs + outputs[-1:],   # HF lists one per stage
            image_size=v.image_size, patch_size=v.patch_size,
            assign_mlp_ratio=[v.token_mlp_ratio, v.mlp_ratio], assign_eps=v.assign_eps),
        "text_config": dict(
            vocab_size=t.vocab_size, hidden_size=t.width,
            intermediate_size=int(t.width * t.mlp_ratio), num_hidden_layers=t.depth,
            num_attention_heads=t.num_heads, max_position_embeddings=t.context_length),
        "projection_dim": cfg.projection_dim,
        "projection_intermediate_dim": cfg.projection_hidden,
        "logit_scale_init_value": cfg.logit_scale_init,
    }


def check_same_architecture(cfg: GroupViTConfig, hf_dict: dict) -> None:
    back = hf_config(hf_dict)
    same = (back.vision == cfg.vision and back.text == cfg.text
            and back.projection_dim == cfg.projection_dim
            and back.projection_hidden == cfg.projection_hidden)
    if not same:
        raise AssertionError(f"HF config does not describe our model:\n{back}\nvs\n{cfg}")


def num_params(tree) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


# ----------------------------------------------------------------------------- ours

def jitted_of(run):
    """The jax.jit function and mesh inside make_train_step's wrapper (for cost analysis)."""
    names = run.__code__.co_freevars
    cells = dict(zip(names, (c.cell_contents for c in run.__closure__ or ())))
    return cells.get("jitted"), cells.get("mesh")


def cost_flops(compiled) -> float | None:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    return float(cost["flops"]) if cost and "flops" in cost else None


class OurStep:
    """The real train step, its (donated) state threaded through the calls."""

    def __init__(self, recipe, cfg: GroupViTConfig, devices, global_batch: int,
                 trim_text: bool = True):
        self.mesh = sharding.make_mesh(1, devices)
        optimizer, schedule = make_optimizer(recipe.optim, global_batch,
                                             recipe_lib.total_steps(recipe),
                                             recipe_lib.warmup_steps(recipe))
        self.state, shardings = train_step.create_train_state(
            cfg, optimizer, self.mesh, recipe.seed, NUM_PROMPTS)
        self.run = train_step.make_train_step(cfg, optimizer, schedule, self.mesh, shardings,
                                              recipe.multi_label_weight)
        local = synthetic_batch(0, global_batch, cfg.vision.image_size, NUM_PROMPTS,
                                cfg.text.context_length, cfg.text.vocab_size, recipe.seed)
        self.local_batch = local
        self.batch = sharding.make_global_batch(local, self.mesh)
        # As the trainer: the text tower runs at the batch's trimmed lengths.
        self.text_lengths = (train_step.text_lengths(local["tokens"], cfg.text.context_length)
                             if trim_text else None)
        self.metrics = None

    def __call__(self):
        self.state, self.metrics = self.run(self.state, self.batch, self.text_lengths)
        jax.block_until_ready((self.state, self.metrics))

    def num_params(self) -> int:
        return num_params(self.state.params)

    def flops(self) -> float | None:
        """FLOPs of one step from XLA's cost analysis (per device on a multi-device mesh)."""
        jitted, mesh = jitted_of(self.run)
        if jitted is None:
            print("warning: could not find the jitted step inside make_train_step; no FLOPs")
            return None
        with jax.set_mesh(mesh):
            return cost_flops(jitted.lower(self.state, self.batch, self.text_lengths).compile())


def matmul_ceiling(device, dtype, n: int, repeats: int) -> float:
    """Best FLOP/s of a jitted n x n @ n x n matmul on `device` (best: least disturbed)."""
    a = jax.device_put(jax.random.normal(jax.random.key(0), (n, n), dtype), device)
    b = jax.device_put(jax.random.normal(jax.random.key(1), (n, n), dtype), device)
    mm = jax.jit(jnp.matmul)
    jax.block_until_ready(mm(a, b))
    times = []
    for _ in range(max(repeats, 3)):
        t0 = time.perf_counter()
        jax.block_until_ready(mm(a, b))
        times.append(time.perf_counter() - t0)
    return 2.0 * n**3 / min(times)


# ----------------------------------------------------------------------------- torch

def normalize(x):
    return torch.nn.functional.normalize(x, dim=-1)


def image_text_loss(img, cap, scale):
    """CLIP loss on normalised embeddings: image i matches caption i, and vice versa."""
    logits = scale * img @ cap.t()
    labels = torch.arange(len(img))
    return 0.5 * (torch.nn.functional.cross_entropy(logits, labels)
                  + torch.nn.functional.cross_entropy(logits.t(), labels))


def multi_label_loss(img, prompts, scale):
    """img [B, D], prompts [B, K, D], normalised. Image i's targets: its own K prompts,
    1/K each, among all B*K; prompt (i, k)'s target: image i. Soft-target CE both ways."""
    b, k, _ = prompts.shape
    logits = scale * img @ prompts.reshape(b * k, -1).t()          # [B, B*K]
    own = torch.eye(b).repeat_interleave(k, dim=1)                  # [B, B*K]
    return 0.5 * (torch.nn.functional.cross_entropy(logits, own / k)
                  + torch.nn.functional.cross_entropy(logits.t(), own.t()))


def torch_losses(image_embeds, text_embeds, logit_scale, ml_logit_scale):
    """text_embeds [B, 1+K, D]: caption first, then the K prompts."""
    img, txt = normalize(image_embeds), normalize(text_embeds)
    scale = logit_scale.exp().clamp(max=100.0)
    ml_scale = ml_logit_scale.exp().clamp(max=100.0)
    return image_text_loss(img, txt[:, 0], scale) + multi_label_loss(img, txt[:, 1:], ml_scale)


def torch_param_groups(named_params):
    """Weight decay where our decay mask applies it: not on 1-D tensors or biases."""
    decay, no_decay = [], []
    for name, p in named_params:
        (no_decay if p.ndim == 1 or name.endswith("bias") else decay).append(p)
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


class TorchStep:
    """HF GroupViTModel towers + our losses + clipping + AdamW, in train() mode."""

    def __init__(self, cfg: GroupViTConfig, local_batch: dict, seed: int = 0):
        hf_dict = hf_config_dict(cfg)
        check_same_architecture(cfg, hf_dict)
        torch.manual_seed(seed)
        self.model = transformers.GroupViTModel(transformers.GroupViTConfig(**hf_dict)).train()
        self.ml_logit_scale = torch.nn.Parameter(torch.tensor(float(cfg.logit_scale_init)))
        named = [*self.model.named_parameters(), ("multi_label_logit_scale", self.ml_logit_scale)]
        self.params = [p for _, p in named]
        self.optimizer = torch.optim.AdamW(torch_param_groups(named), **TORCH_OPT)
        images, tokens = local_batch["images"], local_batch["tokens"]
        self.shape = tokens.shape[:2]                                     # (B, 1+K)
        self.pixels = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
        self.ids = torch.from_numpy(tokens.reshape(-1, tokens.shape[-1]).astype(np.int64))

    def __call__(self):
        m = self.model
        self.optimizer.zero_grad(set_to_none=True)
        image = m.visual_projection(m.vision_model(pixel_values=self.pixels).pooler_output)
        text = m.text_projection(m.text_model(input_ids=self.ids).pooler_output)
        loss = torch_losses(image, text.reshape(*self.shape, -1), m.logit_scale,
                            self.ml_logit_scale)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, CLIP_NORM)
        self.optimizer.step()
        return loss.item()

    def num_params(self) -> int:
        return sum(p.numel() for p in self.params)


# ----------------------------------------------------------------------------- rows

def row(name, batch, ours_times, torch_times, flops, ceiling, extra=None) -> dict:
    ours_s = statistics.median(ours_times)
    torch_s = statistics.median(torch_times) if torch_times else None
    achieved = flops / ours_s if flops else None
    return {"name": name, "batch": batch,
            "ours_s_per_step": ours_s, "torch_s_per_step": torch_s,
            "ours_steps_per_s": 1 / ours_s, "torch_steps_per_s": 1 / torch_s if torch_s else None,
            "ours_img_per_s": batch / ours_s, "torch_img_per_s": batch / torch_s if torch_s else None,
            "speed_up": torch_s / ours_s if torch_s else None,
            "gflop_per_step": flops / 1e9 if flops else None,
            "achieved_gflop_per_s": achieved / 1e9 if achieved else None,
            "fraction_of_ceiling": achieved / ceiling if achieved and ceiling else None,
            "ours_times": ours_times, "torch_times": torch_times,
            "ours_min_s": min(ours_times), "torch_min_s": min(torch_times) if torch_times else None,
            "ours_max_s": max(ours_times), "torch_max_s": max(torch_times) if torch_times else None,
            **(extra or {})}


def bench_size(name, variant, repeats, cpu, ceiling) -> dict:
    recipe = load_recipe(variant)
    cfg = model_config(recipe)
    ours = OurStep(recipe, cfg, [cpu], BATCH)
    theirs = TorchStep(cfg, ours.local_batch)
    t0 = time.perf_counter()
    ours()                                            # compile + first step
    compile_s = time.perf_counter() - t0
    ours_times, torch_times = paired_times(ours, theirs, repeats, warmup=1)
    flops = ours.flops()
    return row(name, BATCH, ours_times, torch_times, flops, ceiling, extra={
        "variant": variant or "", "model": cfg.to_dict(),
        "ours_params": ours.num_params(), "torch_params": theirs.num_params(),
        "ours_first_step_s": compile_s,
        "ours_final_loss": float(ours.metrics["loss"])})


def bench_accelerator(repeats, variant=None, per_device: int = GPU_BATCH_PER_DEVICE,
                      matmul_n: int = GPU_MATMUL_N) -> dict:
    """The `variant` model (None: full), bfloat16, `per_device` examples on every device
    (the gpu1 micro-batch by default): images/s per device and MFU. The text tower runs
    at the synthetic batch's trimmed lengths, as the trainer does."""
    devices = jax.devices()
    recipe = load_recipe(variant)
    cfg = model_config(recipe, dtype="bfloat16")
    ours = OurStep(recipe, cfg, devices, per_device * len(devices))
    t0 = time.perf_counter()
    ours()
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(max(repeats, hygiene.MIN_RUNS)):
        t0 = time.perf_counter()
        ours()
        times.append(time.perf_counter() - t0)
    flops = ours.flops()                              # per device (SPMD-partitioned program)
    ceiling = matmul_ceiling(devices[0], jnp.bfloat16, matmul_n, repeats)
    r = row(f"{variant or 'full'} bf16 {jax.default_backend()} b{per_device}/dev", per_device,
            times, None, flops, ceiling,
            extra={"devices": [str(d) for d in devices], "dtype": "bfloat16", "remat": cfg.remat,
                   "model": cfg.to_dict(), "text_lengths": ours.text_lengths,
                   "global_batch": per_device * len(devices), "first_step_s": compile_s,
                   "final_loss": float(ours.metrics["loss"]),
                   "bf16_matmul_ceiling_gflop_per_s": ceiling / 1e9,
                   "ours_s_spread": hygiene.spread(times)})
    r["mfu"] = r["fraction_of_ceiling"]
    r["img_per_s_per_device"] = r["ours_img_per_s"]
    return r


# ----------------------------------------------------------------------------- report

COLUMNS = [("", "name", "{}", 26), ("batch", "batch", "{}", 5),
           ("ours s/step", "ours_s_per_step", "{:.4f}", 11),
           ("torch s/step", "torch_s_per_step", "{:.4f}", 12),
           ("ours step/s", "ours_steps_per_s", "{:.2f}", 11),
           ("ours img/s", "ours_img_per_s", "{:.2f}", 10),
           ("torch img/s", "torch_img_per_s", "{:.2f}", 11),
           ("speed-up", "speed_up", "{:.2f}x", 8), ("GFLOP/step", "gflop_per_step", "{:.2f}", 10),
           ("GFLOP/s", "achieved_gflop_per_s", "{:.1f}", 8),
           ("% ceiling", "fraction_of_ceiling", "{:.1%}", 9)]


def format_table(rows: list[dict]) -> str:
    def cell(r, key, fmt, width):
        v = r.get(key)
        if key == "name":
            return str(v).ljust(width)
        return ("-" if v is None else fmt.format(v)).rjust(width)
    header = " ".join(h.ljust(w) if k == "name" else h.rjust(w) for h, k, _, w in COLUMNS)
    return "\n".join([header, "-" * len(header)]
                     + [" ".join(cell(r, k, f, w) for _, k, f, w in COLUMNS) for r in rows])


def target(rows: list[dict]) -> dict:
    full = next(r for r in rows if r.get("variant") == "")
    value = full["speed_up"]
    return {"metric": "speed_up (full gcc_yfcc model, CPU, float32, batch 8)",
            "target": f">= {TARGET_SPEED_UP}", "value": value,
            "met": bool(value >= TARGET_SPEED_UP)}


def define_flags(fv: flags.FlagValues) -> None:
    define_speed_flags(fv, DEFAULT_OUT, "timed steps")


def _run(args: flags.FlagValues) -> int:
    out, repeats = Path(args.out), 2 if args.quick else args.repeats

    torch.set_num_threads(os.cpu_count())
    info = machine_info()
    backend = jax.default_backend()
    print(f"CPU: {info['cpu_model']} ({info['cpu_count']} cores); torch threads "
          f"{torch.get_num_threads()}; jax {info['jax']} (backend {backend}), torch "
          f"{info['torch']}; float32, batch {BATCH}, K={NUM_PROMPTS}; median of {repeats}.",
          flush=True)
    cpu = jax.devices("cpu")[0]
    load = hygiene.OutsideLoad()
    ceiling = matmul_ceiling(cpu, jnp.float32, CPU_MATMUL_N, repeats)
    print(f"float32 matmul ceiling ({CPU_MATMUL_N}^3, jax): {ceiling / 1e9:.1f} GFLOP/s",
          flush=True)

    rows = []
    for name, variant in SIZES:
        r = bench_size(name, variant, repeats, cpu, ceiling)
        print(f"{name}: ours {r['ours_s_per_step']:.4f} s, torch {r['torch_s_per_step']:.4f} s "
              f"({r['speed_up']:.2f}x); params ours {r['ours_params']:,}, torch "
              f"{r['torch_params']:,}", flush=True)
        rows.append(r)
    share = load.report()["outside_share"]

    gpu_note = None
    if backend == "gpu":
        rows.append(bench_accelerator(repeats))
    else:
        gpu_note = (f"skipped: full model bf16 at batch {GPU_BATCH_PER_DEVICE}/device and MFU "
                    f"(no GPU; backend {backend})")

    print()
    print(format_table(rows))
    for r in rows:
        if "mfu" in r:
            print(f"\n{r['name']}: {r['img_per_s_per_device']:.1f} images/s per device, MFU "
                  f"{r['mfu']:.1%} of a measured {r['bf16_matmul_ceiling_gflop_per_s']:.0f} "
                  "GFLOP/s bf16 matmul")
    if gpu_note:
        print(f"\nGPU row {gpu_note}.")
    if hygiene.is_contended(share):
        print("the CPU rows were contended: rerun on an idle machine.")
    t = target(rows)
    print(f"\ntarget: {t['metric']} = {t['value']:.2f}x ({t['target']}): "
          f"{'met' if t['met'] else 'MISSED'}")

    result = {"machine": info, "repeats": repeats, "batch": BATCH, "num_prompts": NUM_PROMPTS,
              "dtype": "float32", "cpu_matmul_ceiling_gflop_per_s": ceiling / 1e9,
              "torch_optimizer": {**TORCH_OPT, "clip_grad_norm": CLIP_NORM},
              "rows": rows, "gpu_row": gpu_note or "measured", "target": t}
    print()
    return hygiene.finish(result, load, out, args.allow_contended, repeats)


main = cli.binary(define_flags, _run)


if __name__ == "__main__":
    cli.run_main(main)
