"""The toy world's additions to the paper's losses (config.extra_losses), all off by
default: the paper's configs train the released recipe.

Tried in the toy world's emergence research (experiments/toyworld/EMERGENCE_RESEARCH.md);
none of them made segmentation emerge there, and the toy world's default keeps them off.
    image_text_weight       the paper's image-text loss, scaled (1: the paper's)
    segment_label_weight    the multi-label loss from each image's best-matching segment
                            (losses.segment_multi_label_contrastive)
    group_balance_weight    usage balance of every grouping stage's assignment:
    group_balance_kind      "switch" (losses.group_balance) or "infomax" (group_infomax)
    mosaic_weight           2x2 mosaics of halved batch images, each quadrant pooled from
                            the segments by area and contrasted with its caption and prompts
    segment_noun_weight     segment-to-noun loss with within-image negatives
    segment_noun_scope      (losses.segment_noun_contrastive): its negatives, "batch" or
    segment_noun_symmetric  "image"; the text -> segment term; the soft choice over
    segment_noun_tau        segments (0: the best segment); nouns whose prompts are never
    segment_noun_words      each other's negatives (CLIP tokenizer only)
Segment embeddings are the ones the evaluation names: the image head with BatchNorm's
running statistics.
"""
from __future__ import annotations

import dataclasses

import jax

from groupvit_jax.train import losses

BALANCE_KINDS = ("switch", "infomax")
NOUN_SCOPES = ("batch", "image")


@dataclasses.dataclass(frozen=True)
class ExtraLosses:
    image_text_weight: float = 1.0
    segment_label_weight: float = 0.0
    group_balance_weight: float = 0.0
    group_balance_kind: str = "switch"
    mosaic_weight: float = 0.0
    segment_noun_weight: float = 0.0
    segment_noun_scope: str = "batch"
    segment_noun_symmetric: bool = True
    segment_noun_tau: float = 0.0
    noun_token_ids: tuple[int, ...] = ()   # from segment_noun_words

    def __post_init__(self):
        if self.group_balance_kind not in BALANCE_KINDS:
            raise ValueError(f"extra_losses.group_balance_kind={self.group_balance_kind!r}; "
                             f"known: {BALANCE_KINDS}.")
        if self.segment_noun_scope not in NOUN_SCOPES:
            raise ValueError(f"extra_losses.segment_noun_scope={self.segment_noun_scope!r}; "
                             f"known: {NOUN_SCOPES}.")

    @classmethod
    def from_config(cls, extra_config, tokenizer_name: str, context_length: int):
        """From config.extra_losses (a ConfigDict of the fields above, with
        segment_noun_words in place of noun_token_ids)."""
        fields = dict(extra_config)
        words = tuple(fields.pop("segment_noun_words", ()))
        if words:
            if tokenizer_name != "clip":
                raise ValueError("extra_losses.segment_noun_words needs data.tokenizer='clip'.")
            from input_pipeline.clip_tokenizer import get_tokenizer
            tokens = get_tokenizer(context_length)(list(words))
            fields["noun_token_ids"] = tuple(int(t[1]) for t in tokens)  # after SOT
        return cls(**fields)

    @property
    def active(self) -> bool:
        """Any term added to the paper's losses (image_text_weight is applied by the
        step's contrastive_losses)."""
        return any((self.segment_label_weight, self.group_balance_weight, self.mosaic_weight,
                    self.segment_noun_weight))

    def losses(self, module, params, batch_stats, batch, outputs, text, temperatures, rng):
        """(total of the added terms, their metrics) for one train-mode forward pass:
        `outputs` the model's, `text` [B, 1+K, D] the caption and prompt embeddings."""
        total, metrics = 0.0, {}
        prompt_scale = temperatures.get("multi_label_logit_scale")
        if (self.segment_label_weight or self.segment_noun_weight) and text.shape[1] < 2:
            raise ValueError("extra_losses.segment_label_weight and segment_noun_weight need "
                             "prompts (data.num_prompts > 0).")
        if self.segment_label_weight:
            loss = losses.segment_multi_label_contrastive(outputs["segment_embeds"],
                                                          text[:, 1:], prompt_scale)
            metrics["loss_segment_label"] = loss
            total = total + self.segment_label_weight * loss
        if self.group_balance_weight:
            if self.group_balance_kind == "switch":
                terms = [losses.group_balance(soft, hard)
                         for soft, hard in zip(outputs["soft_maps"], outputs["hard_maps"])]
            else:
                terms = [losses.group_infomax(soft) for soft in outputs["soft_maps"]]
            loss = sum(terms) / len(terms)
            metrics["loss_group_balance"] = loss
            total = total + self.group_balance_weight * loss
        if self.mosaic_weight:
            loss = _mosaic_loss(module, params, batch_stats, batch["images"], text,
                                temperatures, rng)
            metrics["loss_mosaic"] = loss
            total = total + self.mosaic_weight * loss
        if self.segment_noun_weight:
            loss = losses.segment_noun_contrastive(
                outputs["segment_embeds"], text[:, 1:], batch["tokens"][:, 1:], prompt_scale,
                self.segment_noun_scope, self.segment_noun_symmetric,
                self.noun_token_ids or None, self.segment_noun_tau)
            metrics["loss_segment_noun"] = loss
            total = total + self.segment_noun_weight * loss
        return total, metrics


def _mosaic_loss(module, params, batch_stats, images, text, temperatures, rng):
    """B/4 mosaics of four halved batch images go through the image tower; each
    quadrant's embedding, pooled from the segment embeddings by the segments' share of
    the quadrant (losses.quadrant_pooling), is contrasted with its image's caption and
    prompts. The mosaics leave BatchNorm's statistics alone."""
    mosaics = losses.make_mosaics(images)
    gumbel, droppath = jax.random.split(jax.random.fold_in(rng, 1))
    out, _ = module.apply({"params": params, "batch_stats": batch_stats}, mosaics, train=True,
                          method="encode_image", rngs={"gumbel": gumbel, "droppath": droppath},
                          mutable=["batch_stats"])
    grid = images.shape[1] // module.config.vision.patch_size
    quadrants = losses.quadrant_pooling(out["hard_maps"], out["segment_embeds"], grid)
    loss = losses.image_text_contrastive(quadrants, text[:, 0], temperatures["logit_scale"])
    if text.shape[1] > 1:
        loss = loss + losses.multi_label_contrastive(quadrants, text[:, 1:],
                                                     temperatures["multi_label_logit_scale"])
    return loss
