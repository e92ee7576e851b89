"""K-means segments on hand-built tokens with known clusters."""
import numpy as np
import pytest

from groupvit_jax.evaluation.kmeans import kmeans, kmeans_segments
from groupvit_jax.evaluation.predict import SegmentationPredictor
from tests.tiny_pretrained import random_model

# Three obvious clusters, interleaved: A around (1, 1), B around (11, 10), C around (0, 21).
TOKENS = np.array([[0, 0], [10, 10], [0, 20], [2, 0], [12, 10], [0, 2], [0, 22], [2, 2]],
                  np.float32)


def test_clusters_start_nearest_the_mean_then_farthest_first():
    # The mean (3.25, 8.25) is nearest A's (2, 2); farthest from it is C's (0, 22), then
    # B's (12, 10): the clusters are numbered A, C, B. A shifted copy of the tokens,
    # clustered in the same call, gets the same segments, shifted.
    assignment, means = kmeans(np.stack([TOKENS, TOKENS + [100, 0]]), 3)
    labels = [0, 2, 1, 0, 2, 0, 1, 0]
    np.testing.assert_array_equal(assignment[0], np.eye(3, dtype=np.float32)[labels].T)
    np.testing.assert_array_equal(assignment[1], assignment[0])
    np.testing.assert_array_equal(means[0], [[1, 1], [0, 21], [11, 10]])
    np.testing.assert_array_equal(means[1], [[101, 1], [100, 21], [111, 10]])


def test_more_clusters_than_distinct_tokens_leaves_the_extra_ones_empty():
    tokens = np.array([[[1, 0], [1, 0], [0, 1], [0, 1]]], np.float32)
    assignment, means = kmeans(tokens, 5)
    assert np.isfinite(np.asarray(means)).all()
    np.testing.assert_array_equal(assignment[0], [[1, 1, 0, 0], [0, 0, 1, 1]] + [[0] * 4] * 3)
    # An empty cluster keeps its starting centre (a repeat of a token), not 0/0.
    np.testing.assert_array_equal(means[0], [[1, 0], [0, 1]] + [[1, 0]] * 3)


def test_segments_become_one_more_stage_and_embed_their_means():
    tokens = TOKENS[None]
    stage1 = np.full((1, 8, 12), 1 / 8, np.float32)  # 12 patches -> the 8 segment tokens
    outputs = {"soft_maps": [stage1], "segment_tokens": tokens, "segment_embeds": None}
    out = kmeans_segments(outputs, 3, lambda means: 2 * means)
    assignment, means = kmeans(tokens, 3)
    assert len(out["soft_maps"]) == 2 and out["soft_maps"][0] is stage1
    np.testing.assert_array_equal(out["soft_maps"][1], assignment)
    np.testing.assert_array_equal(out["segment_embeds"], 2 * means)
    # A plain ViT: the assignment is the whole chain.
    vit = kmeans_segments({**outputs, "soft_maps": []}, 3, lambda means: means)
    assert len(vit["soft_maps"]) == 1


def test_a_bad_number_of_clusters_is_named():
    for k in (-1, 1.5):
        with pytest.raises(ValueError, match=f"kmeans={k}: expected a number of clusters"):
            SegmentationPredictor(random_model(), ["cat"], kmeans=k)
    with pytest.raises(ValueError, match="k=0"):
        kmeans(TOKENS[None], 0)
