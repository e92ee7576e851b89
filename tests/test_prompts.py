"""Prompt templates, in-graph prompts and batch tokenisation."""
import pytest

from groupvit_jax import templates


@pytest.mark.parametrize("name,count", [("clip_80", 80), ("imagenet_7", 7), ("segmentation", 1)])
def test_template_sets_have_expected_counts_and_one_slot_each(name, count):
    chosen = templates.TEMPLATE_SETS[name]
    assert len(chosen) == count
    assert len(set(chosen)) == count
    assert all(t.count("{}") == 1 for t in chosen)


def test_template_sets_ends_and_subsets():
    assert templates.CLIP_80[0] == "a bad photo of a {}."
    assert templates.CLIP_80[-1] == "a tattoo of the {}."
    assert set(templates.IMAGENET_7) <= set(templates.CLIP_80)
    assert templates.SEGMENTATION == ("a photo of a {}.",)
