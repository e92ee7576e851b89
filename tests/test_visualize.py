"""The renderer: blending, a name on every class region, group borders, legend, PNG files."""
import numpy as np
import pytest
from PIL import Image

from groupvit_jax.evaluation import pictures

H, W = 150, 260  # non-square on purpose
NAMES = ["cat", "dog", "grass"]


def _scene():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (H, W, 3)).astype(np.uint8)
    labels = np.zeros((H, W), np.int32)  # 0 = background
    labels[10:60, 20:120] = 1             # cat: rows 10..59, cols 20..119
    labels[80:140, 150:250] = 2           # dog, two regions
    labels[10:40, 200:250] = 2
    labels[100:150, 0:90] = 3             # grass, touching the image border
    return image, labels


def test_palette_is_a_fixed_sequence_of_distinct_colours():
    assert pictures.palette(3).tolist() == [[235, 40, 40], [40, 235, 235], [40, 40, 124]]
    np.testing.assert_array_equal(pictures.palette(64)[:8], pictures.palette(8))
    colours = pictures.palette(64).astype(float)
    distance = np.linalg.norm(colours[:, None] - colours[None], axis=-1)
    assert distance[~np.eye(64, dtype=bool)].min() > 35


def test_anchor_is_the_point_deepest_inside_each_region():
    _, labels = _scene()
    # The rectangle's centre: 25 px from its top/bottom borders, 50 from its sides.
    [(row, col)] = pictures.label_anchors(labels == 1)
    assert 34 <= row <= 35 and 50 <= col <= 89
    # Largest dog region first, then the smaller one (1,500 px: over 1% of the image).
    (r1, c1), (r2, c2) = pictures.label_anchors(labels == 2)
    assert labels[r1, c1] == 2 and 80 <= r1 < 140 and labels[r2, c2] == 2 and r2 < 40
    # The image border counts as the region's border.
    [(row, col)] = pictures.label_anchors(labels == 3)
    assert labels[row, col] == 3 and 120 <= row <= 130


def test_every_present_class_gets_its_name_on_its_region():
    image, labels = _scene()
    plain = pictures.render_segmentation(image, labels, NAMES, draw_names=False)
    named = pictures.render_segmentation(image, labels, NAMES)
    assert named.shape == plain.shape == (H, W, 3) and named.dtype == np.uint8
    for c in (1, 2, 3):
        for row, col in pictures.label_anchors(labels == c):
            window = (slice(max(row - 4, 0), row + 5), slice(max(col - 4, 0), col + 5))
            assert (named[window] != plain[window]).any(), (NAMES[c - 1], row, col)
    # Text stays near its anchors: far from all of them the two renders are equal.
    assert (named[:5, :15] == plain[:5, :15]).all()


def test_blend_leaves_background_and_ignore_as_the_image():
    image, labels = _scene()
    labels[0:5, 0:10] = pictures.IGNORE_LABEL
    out = pictures.render_segmentation(image, labels, NAMES, alpha=0.25, draw_names=False)
    background = labels == 0
    np.testing.assert_array_equal(out[background | (labels == 255)],
                                  image[background | (labels == 255)])
    colour = pictures.palette(3)[1].astype(float)  # class 1 ("dog") = label 2
    expected = np.round(0.75 * image[labels == 2] + 0.25 * colour)
    np.testing.assert_array_equal(out[labels == 2], expected)
    # Without background, label c is class c.
    no_bg = pictures.render_segmentation(image, labels.clip(0, 2), NAMES[:3],
                                          with_background=False, alpha=1.0, draw_names=False)
    np.testing.assert_array_equal(no_bg[labels == 0], np.broadcast_to(
        pictures.palette(3)[0], (int(background.sum()), 3)))


def test_255_is_a_class_when_there_are_that_many():
    image, labels = _scene()
    many = [f"class {i}" for i in range(300)]
    labels[labels == 3] = 255  # with background: class_names[254]
    ids = pictures.class_ids(labels, len(many), with_background=True)
    assert (ids[labels == 255] == 254).all()
    out = pictures.render_segmentation(image, labels, many, draw_names=False)
    assert (out[labels == 255] != image[labels == 255]).any()
    assert (pictures.class_ids(labels, 3, True)[labels == 255] == -1).all()


def test_bad_label_maps_are_refused():
    image, labels = _scene()
    with pytest.raises(ValueError, match="holds 4, outside"):
        pictures.render_segmentation(image, labels + (labels == 3), NAMES)
    with pytest.raises(ValueError, match="shape"):
        pictures.render_segmentation(image, labels[:, :-1], NAMES)
    with pytest.raises(ValueError, match="uint8"):
        pictures.render_segmentation(image.astype(np.float32), labels, NAMES)


def test_groups_are_coloured_and_outlined():
    image = np.full((H, W, 3), 100, np.uint8)
    groups = (np.arange(W)[None, :] // 65 + 4 * (np.arange(H)[:, None] // 75)).astype(np.int32)
    out = pictures.render_groups(image, groups, 8, alpha=0.5)
    assert out.shape == (H, W, 3)
    border = np.zeros((H, W), bool)
    border[:, [64, 129, 194]] = True   # the last column of each group before a change
    border[74, :] = True
    np.testing.assert_array_equal((out == 255).all(-1), border)
    colours = pictures.palette(8).astype(float)
    for g in range(8):
        inside = (groups == g) & ~border
        np.testing.assert_array_equal(out[inside], np.round(50 + 0.5 * colours[g])[None]
                                      .repeat(inside.sum(), 0))
    with pytest.raises(ValueError, match=r"group map holds 7, outside \[0, 7\)"):
        pictures.render_groups(image, groups, 7)
    # 64 groups on a 900-pixel image: 3-pixel borders (the change at column 149/150).
    big = np.zeros((900, 1200, 3), np.uint8)
    fine = (np.arange(1200)[None, :] // 150 + 8 * (np.arange(900)[:, None] // 113)).clip(0, 63)
    white = (pictures.render_groups(big, fine.astype(np.int32), 64) == 255).all(-1)
    assert white[:, 148:151].all() and not white[20:100, 100:148].any()
    assert not white[20:100, 151:200].any()


def test_legend_lists_every_class_and_greys_absent_ones():
    legend = pictures.render_legend(NAMES, present=[0, 2], font_size=16)
    row, pad = 24, 6
    assert legend.shape == (2 * pad + 3 * row, legend.shape[1], 3) and legend.shape[1] > 40
    swatch_centres = [legend[pad + c * row + row // 2, pad + row // 2] for c in range(3)]
    np.testing.assert_array_equal(swatch_centres[0], pictures.palette(3)[0])
    np.testing.assert_array_equal(swatch_centres[1], [225, 225, 225])
    np.testing.assert_array_equal(swatch_centres[2], pictures.palette(3)[2])
    with pytest.raises(ValueError, match=r"\[3\] are outside"):
        pictures.render_legend(NAMES, present=[3])


def test_save_png_round_trip(tmp_path):
    image, _ = _scene()
    path = pictures.save_png(tmp_path / "deep" / "x.png", image)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), image)
    assert [p.name for p in path.parent.iterdir()] == ["x.png"]  # no temporary left
    with pytest.raises(ValueError, match="bad.png"):
        pictures.save_png(tmp_path / "bad.png", image.astype(np.float32))
