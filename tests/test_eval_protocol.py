"""The segmentation protocol: hand-built model outputs with known answers, and parity
with an independent PyTorch re-statement of the released code (GroupViTSegInference
inside mmseg's slide inference) on a tiny random model, pixel for pixel."""
import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from groupvit_jax.evaluation import predict
from groupvit_jax.evaluation.scoring import group_probabilities, score_windows
from tests.tiny_pretrained import random_model

SCALE = np.float32(10.0)


def _unit(*weights):
    v = np.zeros(8, np.float32)
    v[:len(weights)] = weights
    return v / np.linalg.norm(v)


def _hand_built(segments, image):
    """A 4x4 window on a 2x2 patch grid: stage 1 keeps the 4 tokens apart, stage 2 puts
    the top row of tokens in group 0 and the bottom row in group 1 (group 2 owns none)."""
    stage1 = np.eye(4, dtype=np.float32)[None]
    stage2 = np.array([[[.8, .8, .1, .1], [.1, .1, .8, .8], [.1, .1, .1, .1]]], np.float32)
    return {"soft_maps": [stage1, stage2], "segment_embeds": np.stack(segments)[None],
            "image_embeds": image[None]}


CLASSES = np.eye(6, 8, dtype=np.float32)  # class c's embedding is the basis vector e_c


def _score(outputs, bg_thresh, with_background=True):
    groups, tables = score_windows(outputs, CLASSES, SCALE, (2, 2), (4, 4), bg_thresh,
                                   with_background)
    return np.asarray(groups)[0], np.asarray(tables)[0]


def _expected_scores(segments, image):
    """The released formula, written out for one window in NumPy."""
    def softmax(x):
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)
    logits = np.stack(segments) @ CLASSES.T * SCALE
    top5 = np.argsort(-(image @ CLASSES.T))[:5]
    masked = np.full_like(logits, -np.inf)
    masked[:, top5] = logits[:, top5]
    return softmax(masked) * softmax(logits)


def test_pixels_take_their_groups_scores_and_top5_restricts_classes():
    # Group 1 looks most like class 5, but the image as a whole ranks class 5 last, so
    # the top-5 restriction hands group 1's pixels to its runner-up, class 1.
    segments = [_unit(1), _unit(0, .5, 0, 0, 0, 1), _unit(0, 0, 1)]
    image = _unit(5, 4, 3, 2, 1, 0)
    groups, tables = _score(_hand_built(segments, image), 0.0, with_background=False)
    assert groups.tolist() == [[0] * 4] * 2 + [[1] * 4] * 2
    np.testing.assert_allclose(tables, _expected_scores(segments, image), rtol=1e-5)
    labels = tables[groups].argmax(-1)
    assert labels.tolist() == [[0] * 4] * 2 + [[1] * 4] * 2
    assert _expected_scores(segments, image)[1, 5] == 0  # excluded class scores exactly 0


def test_background_threshold_is_capped_by_the_windows_best_group():
    segments = [_unit(1), _unit(1, 1, 1, 1, 1), _unit(0, 1, .2)]
    image = _unit(1, 1, 1, 1, 1)
    best = _expected_scores(segments, image).max(-1)
    assert best[0] > best[2] > best[1]  # the construction: group 0 leads, 1 trails
    # Threshold 0.999 is above every score: capped at group 0's best, so only group 1
    # (and the pixel-less group 2) fall below it; group 0 keeps its class.
    _, tables = _score(_hand_built(segments, image), 0.999)
    assert tables[:, 0].tolist() == [0.0, 1.0, 1.0]
    # A low threshold is not capped: only groups below it are background.
    _, tables = _score(_hand_built(segments, image), (best[1] + best[2]) / 2)
    assert tables[:, 0].tolist() == [0.0, 1.0, 0.0]


def test_a_pixel_less_group_sets_the_cap():
    # Group 2 owns no pixel but has the window's best score: the cap is its score, so
    # group 0, weaker than it, becomes background as well.
    segments = [_unit(1, .3), _unit(1, 1, 1, 1, 1), _unit(1)]
    image = _unit(1, 1, 1, 1, 1)
    best = _expected_scores(segments, image).max(-1)
    assert best[2] > best[0] > best[1]
    groups, tables = _score(_hand_built(segments, image), 0.999)
    assert tables[:, 0].tolist() == [1.0, 1.0, 0.0]
    assert set(groups.ravel().tolist()) == {0, 1}


def test_without_stages_every_patch_is_its_own_segment():
    # A plain ViT on a 2x2 patch grid, 4x4 window: the identity upsampled with half-pixel
    # centres, so pixel rows/columns weigh their patches [1, 0], [.75, .25], [.25, .75],
    # [0, 1], and the argmax is the nearest patch.
    probs = np.asarray(group_probabilities([], (2, 2), (4, 4)))
    taps = np.array([[1, 0], [.75, .25], [.25, .75], [0, 1]], np.float32)
    expected = np.einsum("yr,xc->yxrc", taps, taps).reshape(1, 4, 4, 4)
    np.testing.assert_array_equal(probs, expected)
    np.testing.assert_array_equal(probs[0].argmax(-1), [[0, 0, 1, 1]] * 2 + [[2, 2, 3, 3]] * 2)
    # Every window of a batch shares those groups and keeps its own score table.
    segments = np.eye(4, 8, dtype=np.float32)[None].repeat(3, 0)
    outputs = {"soft_maps": [], "segment_embeds": segments, "image_embeds": segments[:, 0]}
    groups, tables = score_windows(outputs, CLASSES, SCALE, (2, 2), (4, 4), 0.5, True)
    assert groups.shape == (3, 4, 4) and tables.shape == (3, 4, 7)
    np.testing.assert_array_equal(groups[2], probs[0].argmax(-1))


# ---- parity with the released implementation, restated in PyTorch ----

def _reference(model, image, class_names, bg_thresh):
    """mmseg 0.18 test pipeline + slide_inference around GroupViTSegInference.encode_decode,
    re-stated from the released code with torch ops; the tower is our model's.

    Returns the label map and the pixels where a float32 tie (between two groups of a
    window or two classes of the final scores) may decide the label."""
    h, w = image.shape[:2]
    scale = min(2048 / max(h, w), 448 / min(h, w))
    bgr = cv2.resize(image[..., ::-1].copy(), (int(w * scale + 0.5), int(h * scale + 0.5)),
                     interpolation=cv2.INTER_LINEAR)
    img = bgr.astype(np.float32)
    cv2.cvtColor(img, cv2.COLOR_BGR2RGB, img)
    cv2.subtract(img, np.float64([[123.675, 116.28, 103.53]]), img)
    cv2.multiply(img, 1 / np.float64([[58.395, 57.12, 57.375]]), img)
    img = torch.from_numpy(img).permute(2, 0, 1)[None]
    text = torch.from_numpy(np.array(model.encode_text(model.tokenize(
        [f"a photo of a {c}." for c in class_names]))))
    text = F.normalize(text[:, None].mean(1), dim=-1)
    logit_scale = torch.clamp(torch.tensor(np.asarray(
        model.variables["params"]["logit_scale"])).exp(), max=100)

    def encode_decode(crop, y1, y2, x1, x2):
        gh, gw = crop.shape[2] // 16, crop.shape[3] // 16  # the patch conv drops the rest
        out = model.encode_image(crop[:, :, :gh * 16, :gw * 16].permute(0, 2, 3, 1).numpy())
        attn = None
        for soft in out["soft_maps"]:
            soft = torch.from_numpy(np.array(soft)).transpose(1, 2)  # [B, N, G]
            attn = soft if attn is None else attn @ soft
        attn = attn.reshape(1, gh, gw, -1).permute(0, 3, 1, 2)
        attn = F.interpolate(attn, size=crop.shape[2:], mode="bilinear", align_corners=False)
        attn = attn[0].permute(1, 2, 0)
        top2 = attn.topk(2, dim=-1).values
        group_tie[y1:y2, x1:x2] |= (top2[..., 0] - top2[..., 1]) < 1e-6
        onehot = F.one_hot(attn.argmax(-1), attn.shape[-1]).float()
        seg = F.normalize(torch.from_numpy(np.array(out["segment_embeds"]))[0], dim=-1)
        avg = F.normalize(torch.from_numpy(np.array(out["image_embeds"])), dim=-1)
        group = seg @ text.T * logit_scale
        pre = F.softmax(group, -1)
        avg = F.softmax(avg @ text.T * logit_scale, -1)
        mask = torch.zeros_like(avg)
        top = avg.topk(dim=-1, k=min(5, len(class_names)))
        mask.scatter_add_(-1, top.indices, torch.ones_like(top.values))
        group = F.softmax(group.masked_fill(~mask.bool(), float("-inf")), -1) * pre
        logits = torch.zeros(len(class_names) + 1, *attn.shape[:2])
        logits[1:] = (onehot @ group).permute(2, 0, 1)
        thresh = min(bg_thresh, group.max().item())
        logits[0, (onehot @ group).max(-1).values < thresh] = 1
        return logits[None]

    hh, ww = img.shape[2:]
    preds = torch.zeros(1, len(class_names) + 1, hh, ww)
    group_tie = torch.zeros(hh, ww, dtype=torch.bool)  # pixels whose group is a float32 tie
    count = torch.zeros(1, 1, hh, ww)
    for i in range(max(hh - 448 + 223, 0) // 224 + 1):
        for j in range(max(ww - 448 + 223, 0) // 224 + 1):
            y2, x2 = min(i * 224 + 448, hh), min(j * 224 + 448, ww)
            y1, x1 = max(y2 - 448, 0), max(x2 - 448, 0)
            preds += F.pad(encode_decode(img[:, :, y1:y2, x1:x2], y1, y2, x1, x2),
                           (x1, ww - x2, y1, hh - y2))
            count[:, :, y1:y2, x1:x2] += 1
    preds = F.interpolate(preds / count, size=(h, w), mode="bilinear", align_corners=False)
    # An output pixel reads its 2x2 source neighbourhood: a tie there can flip it.
    group_tie = F.interpolate(group_tie[None, None].float(), size=(h, w), mode="bilinear",
                              align_corners=False)[0, 0] > 0
    top2 = preds[0].topk(2, dim=0).values
    ties = group_tie | ((top2[0] - top2[1]) < 1e-5)
    return F.softmax(preds, 1).argmax(1)[0].numpy(), ties.numpy()


@pytest.fixture(scope="module")
def tiny_model():
    return random_model()


@pytest.mark.parametrize("hw", [
    (375, 500), (673, 449), (333, 333),
    # Long side capped at 2048: 179x448 windows, the patch grid drops 3 rows of pixels.
    pytest.param((61, 700), marks=pytest.mark.slow)])
def test_matches_the_released_protocol_pixel_for_pixel(tiny_model, hw):
    rng = np.random.default_rng(hw[0])
    # Smooth random structure, so groups form regions rather than noise.
    small = rng.integers(0, 256, (6, 8, 3), np.uint8)
    image = cv2.resize(small, hw[::-1], interpolation=cv2.INTER_CUBIC)
    names = ["cat", "dog", "tree", "sky", "road", "car", "person"]
    ours = predict.predict_segmentation(tiny_model, image, names, bg_thresh=0.35)
    ref, ties = _reference(tiny_model, image, names, 0.35)
    assert ours.shape == hw and ours.dtype == np.int32
    assert ties.mean() < 1e-3
    np.testing.assert_array_equal(ours[~ties], ref[~ties])
    assert len(np.unique(ref)) >= 2  # the comparison sees background and a class


def test_tower_batches_are_powers_of_two_up_to_the_limit(tiny_model):
    predictor = predict.SegmentationPredictor(tiny_model, ["cat"], windows_per_device=8)
    sizes = [predictor.batch_size(n) for n in (1, 2, 3, 5, 8, 20)]
    assert sizes == [1, 2, 4, 8, 8, 8]


def test_templates_are_a_template_a_set_name_or_a_list():
    assert predict.resolve_templates("a photo of a {}.") == ("a photo of a {}.",)
    assert len(predict.resolve_templates("clip_80")) == 80
    assert predict.resolve_templates(["a {}.", "the {}."]) == ("a {}.", "the {}.")
    with pytest.raises(ValueError, match="not a template set; sets: .*imagenet_7"):
        predict.resolve_templates("photo")
    with pytest.raises(ValueError, match="need a '{}'"):
        predict.resolve_templates(["a {}.", "no slot"])
