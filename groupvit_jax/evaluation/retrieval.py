"""Held-out image <-> caption retrieval: the early signal that must work before
segments can emerge (evaluator kind "retrieval")."""
from __future__ import annotations

import numpy as np

from groupvit_jax.models.model import l2_normalize
from input_pipeline.synthetic_data import synthetic_batch

HELD_OUT_STEP = 2**62  # synthetic batches are indexed by step; training never gets here


def _retrieval_pairs(cfg, train_config) -> dict:
    vision, text = train_config.model.vision, train_config.model.text
    if train_config.data.source == "records":
        if not cfg.dataset:
            raise ValueError("evals.retrieval.dataset is empty: with data.source='records' pass "
                             "a converted held-out folder, --config.evals.retrieval.dataset=DIR.")
        from input_pipeline.held_out import held_out_pairs
        return held_out_pairs(cfg.dataset, cfg.num_examples, vision.image_size,
                              train_config.data.tokenizer, text.context_length)
    return synthetic_batch(HELD_OUT_STEP, cfg.num_examples, vision.image_size, 0,
                           text.context_length, text.vocab_size, train_config.seed)


def evaluator(cfg, train_config):
    """Image -> caption and caption -> image top-1 retrieval among `num_examples` held-out
    pairs: the first records of `cfg.dataset` for a records source; for the synthetic one,
    a step no run reaches. The early signal that must work before segments can emerge."""
    held_out = _retrieval_pairs(cfg, train_config)

    def run(model):
        image = l2_normalize(model.encode_image(held_out["images"])["image_embeds"])
        caption = l2_normalize(model.encode_text(held_out["tokens"][:, 0]))
        sim = np.asarray(image @ caption.T)
        # Captions can repeat (synthetic concepts, duplicate alt-texts): any match counts.
        same = (held_out["tokens"][:, None, 0] == held_out["tokens"][None, :, 0]).all(-1)
        hits_i = same[np.arange(len(sim)), sim.argmax(1)]
        hits_t = same[sim.argmax(0), np.arange(len(sim))]
        return {"image_to_text_top1": float(hits_i.mean()),
                "text_to_image_top1": float(hits_t.mean())}
    return run
