"""The training config shared by the files in configs/: the released recipe + variants.

A config file calls `recipe(...)` for its dataset mixture and model, then
`apply_variant(config, arg)` for what its `get_config(arg)` was given.
"""
from __future__ import annotations

import math

from ml_collections import ConfigDict

from groupvit_jax.models.config import GroupViTConfig, TextConfig, VisionConfig
from input_pipeline import augment

VARIANTS = ("", "runlocal", "gpu1")


def model_dict(config: GroupViTConfig) -> ConfigDict:
    d = config.to_dict()
    return ConfigDict({**d, "vision": ConfigDict(d["vision"]), "text": ConfigDict(d["text"])})


def recipe(model: GroupViTConfig, num_prompts: int, examples_per_epoch: int,
           datasets: dict[str, float]) -> ConfigDict:
    c = ConfigDict()
    c.model = model_dict(model.replace(multi_label_scale=num_prompts > 0))
    c.data = ConfigDict(dict(
        source="records",            # converted datasets (input_pipeline); or "synthetic"
        data_dir="",                 # folder of converted datasets named in `datasets`; of tfds:
                                     # datasets too (else TFDS_DATA_DIR)
        datasets=datasets,           # name, folder/glob or tfds:NAME -> weight (input_pipeline.mixture)
        # The features of tfds:NAME datasets read as image, caption(s) and nouns ("": none,
        # extracted online); see input_pipeline/fields.py.
        tfds_fields=ConfigDict(dict(image="image", caption="caption", nouns="",
                                    caption_choice="first")),
        global_batch=4096,
        num_prompts=num_prompts,     # K nouns-as-prompts per caption (0: no multi-label loss)
        examples_per_epoch=examples_per_epoch,
        augment=augment.default_config(),  # the released recipe's switches
        tokenizer="clip",            # or "sentencepiece:/path/to.model"
        shuffle_buffer=10_000,       # examples per shuffled block, per dataset and host
        num_threads=32,              # tf.data threads per host; the rest stay with JAX
        prefetch=2,                  # batches prepared ahead
        # Skipped (undecodable) examples that stop the run: a run of bad data needs a look.
        max_skipped_in_a_row=1000,
        max_skipped_fraction=0.05,   # of the examples read, once 1000 are
    ))
    c.optim = ConfigDict(dict(base_lr=1.6e-3, warmup_lr=4e-6, min_lr=4e-5, b1=0.9, b2=0.999,
                              eps=1e-8, weight_decay=0.05, clip_grad_norm=5.0,
                              exclude_extra_from_decay=False))
    c.epochs = 30
    c.warmup_epochs = 2.0
    c.total_steps = -1              # -1: epochs * examples_per_epoch // global_batch
    c.multi_label_weight = 1.0
    # The toy world's additions to the losses (train/extra_losses.py), off in the paper's
    # recipe.
    c.extra_losses = ConfigDict(dict(
        image_text_weight=1.0, segment_label_weight=0.0, group_balance_weight=0.0,
        group_balance_kind="switch", mosaic_weight=0.0, segment_noun_weight=0.0,
        segment_noun_scope="batch", segment_noun_symmetric=True, segment_noun_tau=0.0,
        segment_noun_words=()))
    # >1: the step splits the global batch into this many micro-batches and caches
    # gradients, so the loss still spans the global batch (see train_step).
    c.grad_accum_steps = 1
    c.mesh = ConfigDict(dict(model=1))  # >1 shards parameters and optimizer state
    c.seed = 0
    c.log_every_steps = 50
    c.checkpoint_every_steps = 1000
    c.keep_checkpoints = 3
    # name -> {kind: a registered evaluator, every_steps, its options}; see evaluators.py.
    # retrieval.dataset: a converted held-out folder (needed with data.source="records").
    c.evals = ConfigDict({"retrieval": {"kind": "retrieval", "every_steps": 2000,
                                        "num_examples": 256, "dataset": ""}})
    return c


def check(config) -> None:
    """The counts the schedule divides by and the loop steps with are in range: a
    ValueError naming the first that is not (global_batch=0 would divide by zero)."""
    at_least = (("data.global_batch", config.data.global_batch, 1),
                ("data.examples_per_epoch", config.data.examples_per_epoch, 1),
                ("grad_accum_steps", config.grad_accum_steps, 1),
                ("warmup_epochs", config.warmup_epochs, 0),
                ("log_every_steps", config.log_every_steps, 1),
                ("checkpoint_every_steps", config.checkpoint_every_steps, 1),
                ("keep_checkpoints", config.keep_checkpoints, 1),
                ("data.num_prompts", config.data.num_prompts, 0),
                ("multi_label_weight", config.multi_label_weight, 0),
                *((f"optim.{k}", v, 0) for k, v in config.optim.items()
                  if isinstance(v, float)))
    for name, value, low in at_least:
        if not value >= low or not math.isfinite(value):  # `not >=`: NaN fails too
            raise ValueError(f"config {name}={value!r}: must be a finite number >= {low}.")
    if config.total_steps <= 0 and not config.epochs >= 1:
        raise ValueError(f"config epochs={config.epochs!r}: must be >= 1 when total_steps "
                         f"({config.total_steps}) does not set the length.")


def steps_per_epoch(config) -> int:
    check(config)
    return max(config.data.examples_per_epoch // config.data.global_batch, 1)


def total_steps(config) -> int:
    return config.total_steps if config.total_steps > 0 else config.epochs * steps_per_epoch(config)


def warmup_steps(config) -> int:
    return round(config.warmup_epochs * steps_per_epoch(config))


def apply_variant(config: ConfigDict, arg: str | None) -> ConfigDict:
    """`runlocal`: a tiny model and a few steps that run on a laptop CPU.
    `gpu1`: the full recipe on ONE GPU: global batch 4096 in 16 micro-batches of 256,
    bfloat16 matmuls, rematerialised blocks."""
    arg = arg or ""
    if arg not in VARIANTS:
        raise ValueError(f"Unknown config variant {arg!r}; known: {VARIANTS[1:]}.")
    if arg == "runlocal":
        tiny = GroupViTConfig(
            vision=VisionConfig(image_size=64, patch_size=16, width=64, num_heads=2,
                                depths=(1, 1, 1), num_group_tokens=(8, 4, 0),
                                num_output_groups=(8, 4)),
            text=TextConfig(width=64, num_heads=2, depth=1),
            projection_dim=32, projection_hidden=128,
            multi_label_scale=config.data.num_prompts > 0)
        config.model = model_dict(tiny)
        config.data.source = "synthetic"
        config.data.augment.image_size = tiny.vision.image_size
        config.data.global_batch = 8
        config.total_steps = 30
        config.warmup_epochs = 0
        config.optim.base_lr = 1.0  # = 2e-3 at batch 8 after the linear scaling
        config.log_every_steps = 5
        config.checkpoint_every_steps = 10
        config.evals.retrieval.every_steps = 15
        config.evals.retrieval.num_examples = 32
    elif arg == "gpu1":
        config.grad_accum_steps = 16
        config.model.dtype = "bfloat16"
        config.model.remat = True
    return config
