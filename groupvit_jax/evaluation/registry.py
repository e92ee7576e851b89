"""The trainer's periodic evaluators, by kind.

`config.evals` maps a name to a ConfigDict with `kind` (a key of EVALUATORS),
`every_steps` and the evaluator's own options. Each evaluator is built once from its
config, `EVALUATORS[kind](cfg, train_config)`, and called as `run(model) -> {metric:
value}` with a `PretrainedGroupViT` holding the variables to evaluate; metrics are
logged as `NAME/metric`.
"""
from __future__ import annotations

from typing import Callable

from groupvit_jax.evaluation import classification, retrieval, segmentation

EVALUATORS: dict[str, Callable] = {
    "seg": segmentation.evaluator,
    "classification": classification.evaluator,
    "retrieval": retrieval.evaluator,
}


def create(evals_config, train_config) -> list[tuple[str, int, Callable]]:
    """(name, every_steps, run) for each configured evaluator; unknown kinds are errors."""
    out = []
    for name, cfg in evals_config.items():
        if cfg.kind not in EVALUATORS:
            raise ValueError(f"evals.{name}.kind={cfg.kind!r} is not a known evaluator; "
                             f"known: {sorted(EVALUATORS)}.")
        out.append((name, cfg.every_steps, EVALUATORS[cfg.kind](cfg, train_config)))
    return out
