"""Zero-shot evaluation: segmentation (the paper's protocol) and classification.

    import groupvit_jax as gv
    labels = gv.evaluation.predict_segmentation(model, image_uint8, ["cat", "dog"])
"""
from groupvit_jax.evaluation import classification, segmentation
from groupvit_jax.evaluation.metrics import SegmentationMetric
from groupvit_jax.evaluation.predict import SegmentationPredictor, predict_segmentation

__all__ = ["SegmentationMetric", "SegmentationPredictor", "classification",
           "predict_segmentation", "segmentation"]
