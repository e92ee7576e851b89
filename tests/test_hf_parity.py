"""Parity with Hugging Face's PyTorch GroupViTModel on converted random weights."""
import jax
import numpy as np
import pytest

pytest.importorskip("transformers")

from tests import torch_reference  # noqa: E402
from groupvit_jax.checkpoints import pretrained  # noqa: E402
from groupvit_jax.models.model import GroupViT  # noqa: E402

RTOL = 1e-4
ONE_STAGE = {"depths": [6, 6], "num_group_tokens": [64, 0], "num_output_groups": [8, 8]}


def _inputs(batch=2, size=224, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((batch, size, size, 3)).astype(np.float32)
    tokens = np.zeros((3, 77), np.int32)
    for i, length in enumerate((5, 12, 77)):
        tokens[i, :length] = rng.integers(1, 49406, length)
        tokens[i, 0], tokens[i, length - 1] = 49406, 49407
    return images, tokens


def _close(ours, ref, name):
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape, name
    scale = np.abs(ref).max()
    np.testing.assert_allclose(ours, ref, rtol=RTOL, atol=RTOL * scale, err_msg=name)


def _decisive(ours, ref):
    """Tokens whose best group leads its second by more than 10x the measured
    difference between the two frameworks' assignment logits: only there is an
    agreement on the hard assignment evidence rather than luck."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    top2 = np.log(np.sort(ref, axis=1)[:, -2:])
    margin = top2[:, 1] - top2[:, 0]
    relevant = ref > 1e-3
    error = np.abs(np.log(ours[relevant]) - np.log(ref[relevant])).max()
    return margin > 10 * error


@pytest.mark.parametrize("vision", [None, ONE_STAGE], ids=["two_stage", "one_stage"])
def test_matches_hf(vision):
    hf = torch_reference.hf_model(vision)
    config, variables = torch_reference.convert(hf)
    model = pretrained.PretrainedGroupViT(config, variables)
    images, tokens = _inputs()
    ref = torch_reference.hf_outputs(hf, images, tokens)

    out = model.encode_image(images)
    text = model.encode_text(tokens)
    _close(out["image_embeds"], ref["image_embeds"], "image_embeds")
    _close(out["segment_embeds"], ref["segment_embeds"], "segment_embeds")
    _close(text, ref["text_embeds"], "text_embeds")
    assert len(out["soft_maps"]) == len(ref["soft_maps"])
    for i, (ours, theirs) in enumerate(zip(out["soft_maps"], ref["soft_maps"])):
        _close(ours, theirs, f"soft_map {i}")
        # Evaluation still uses the hard one-hot of the same argmax. In float32 a few
        # tokens are near-ties; the float64 test below checks every token.
        decisive = _decisive(ours, theirs)
        assert decisive.mean() > 0.95
        hard = np.asarray(out["hard_maps"][i])
        np.testing.assert_array_equal(hard.argmax(1)[decisive], theirs.argmax(1)[decisive])
        np.testing.assert_allclose(hard.sum(1), 1.0, atol=1e-6)

    img = np.asarray(out["image_embeds"])
    txt = np.asarray(text)
    img = img / np.linalg.norm(img, axis=-1, keepdims=True)
    txt = txt / np.linalg.norm(txt, axis=-1, keepdims=True)
    logits = np.exp(float(variables["params"]["logit_scale"])) * img @ txt.T
    _close(logits, ref["logits_per_image"], "logits_per_image")
    assert model.logit_scale == pytest.approx(min(np.exp(hf.logit_scale.item()), 100), rel=1e-6)


@pytest.mark.parametrize("vision", [None, ONE_STAGE], ids=["two_stage", "one_stage"])
def test_matches_hf_float64_every_assignment(vision):
    """In float64 rounding cannot flip an assignment: all hard maps must agree exactly."""
    hf = torch_reference.hf_model(vision).double()
    config, variables = torch_reference.convert(hf)
    images, tokens = _inputs()
    ref = torch_reference.hf_outputs(hf, images.astype(np.float64), tokens)
    with jax.enable_x64(True):
        module = GroupViT(config.replace(dtype="float64"))
        variables = jax.tree.map(lambda a: np.asarray(a, np.float64), variables)
        out = module.apply(variables, images.astype(np.float64), method="encode_image")
        text = module.apply(variables, tokens, method="encode_text")["text_embeds"]
        for ours, theirs in zip(out["hard_maps"], ref["soft_maps"]):
            np.testing.assert_array_equal(np.asarray(ours).argmax(1), theirs.argmax(1))
        for ours, theirs in zip(out["soft_maps"], ref["soft_maps"]):
            np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)
        for key in ("image_embeds", "segment_embeds"):
            np.testing.assert_allclose(out[key], ref[key], rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(text, ref["text_embeds"], rtol=1e-9, atol=1e-10)
