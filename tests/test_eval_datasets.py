"""Dataset readers on small generated trees, the COCO-Object converter, eval readers."""
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from groupvit_jax.evaluation import coco_object, datasets
from input_pipeline.eval_readers import batches, decode_image, host_share, read_image


def _image(path: Path, hw=(6, 8), seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (*hw, 3), np.uint8)
    Image.fromarray(pixels).save(path)


def _label(path: Path, values, palette=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(np.asarray(values, np.uint8))
    if palette:
        im = im.convert("P")
        im.putpalette([0, 0, 0, 128, 0, 0] + [255, 255, 255] * 254)
    im.save(path)


def _label_values():
    values = np.zeros((6, 8), np.uint8)
    values[2:4, 2:5] = 15
    values[0, :] = 255
    return values


def _voc_like(root: Path, ids, label_dir: str, split: str):
    for i, name in enumerate(ids):
        _image(root / "JPEGImages" / f"{name}.jpg", seed=i)
        _label(root / label_dir / f"{name}.png", _label_values(), palette=True)
    (root / "ImageSets" / split).mkdir(parents=True)
    (root / "ImageSets" / split / "val.txt").write_text("\n".join(ids) + "\n")


def test_voc(tmp_path):
    _voc_like(tmp_path / "VOCdevkit/VOC2012", ["2007_000033", "2007_000042"],
              "SegmentationClass", "Segmentation")
    ds = datasets.load("voc", tmp_path / "VOCdevkit")
    assert len(ds) == 2 and ds.with_background
    assert ds.query_names[10:16] == ("table", "dog", "horse", "motorbike", "person", "plant")
    assert ds.class_names[-1] == "monitor" and len(ds.class_names) == 21
    image, label = ds.read(0)
    assert image.shape == (6, 8, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(label, _label_values())  # palette indices, 255 kept


def test_context(tmp_path):
    _voc_like(tmp_path / "VOC2010", ["2008_000002"], "SegmentationClassContext",
              "SegmentationContext")
    ds = datasets.load("context", tmp_path / "VOC2010")
    assert len(ds.class_names) == 60
    assert {"airplane", "plant", "monitor"} <= set(ds.query_names)
    assert ds.query_names[0] == "airplane" and ds.query_names[-1] == "wood"


def test_voc_names_missing_files(tmp_path):
    root = tmp_path / "VOC2012"
    _voc_like(root, ["a", "b", "c"], "SegmentationClass", "Segmentation")
    (root / "SegmentationClass/b.png").unlink()
    (root / "JPEGImages/c.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"2 files named by .*val.txt are missing: "
                                                r".*b.png, .*c.jpg$"):
        datasets.voc(root)
    with pytest.raises(FileNotFoundError, match="missing: .*JPEGImages"):
        datasets.voc(tmp_path / "nowhere")


def test_coco_object_from_coco_stuff(tmp_path):
    stuff = np.array([[0, 89, 91, 255], [12, 181, 0, 26]], np.uint8)
    _image(tmp_path / "images/val2017/000000000139.jpg", hw=(2, 4))
    _label(tmp_path / "annotations/val2017/000000000139.png", stuff)
    assert coco_object.main(["coco_object", f"--coco_dir={tmp_path}"]) == 0
    ds = datasets.load("coco_object", tmp_path)
    _, label = ds.read(0)
    # person (0) -> 1, toothbrush (89) -> 80, stop sign (12) -> 12, backpack (26, after
    # COCO's gaps at 11 and 25) -> 25; stuff (91..181) and unlabelled (255) -> 0.
    np.testing.assert_array_equal(label, [[1, 80, 0, 0], [12, 0, 1, 25]])
    assert ds.class_names[80] == "toothbrush" and ds.class_names[25] == "backpack"
    # Never overwrites without --overwrite.
    assert coco_object.main(["coco_object", f"--coco_dir={tmp_path}"]) == 3
    with pytest.raises(ValueError, match="ids \\[11\\]"):
        coco_object.convert_label(np.array([[11]], np.uint8))


def test_folder_layout_and_mismatches(tmp_path):
    (tmp_path / "classes.txt").write_text("background\nsquare\ndisc\n")
    for name in ("a", "b"):
        _image(tmp_path / "images" / f"{name}.png")
        _label(tmp_path / "labels" / f"{name}.png", np.ones((6, 8)))
    ds = datasets.load("folder", tmp_path)
    assert ds.with_background and ds.query_names == ("square", "disc")
    assert [p[0].name for p in ds.pairs] == ["a.png", "b.png"]
    (tmp_path / "classes.txt").write_text("square\ndisc\n")
    assert not datasets.folder(tmp_path).with_background
    _label(tmp_path / "labels" / "orphan.png", np.ones((6, 8)))
    with pytest.raises(FileNotFoundError, match="1 label files have no image: .*orphan.png"):
        datasets.folder(tmp_path)
    (tmp_path / "labels" / "orphan.png").unlink()
    for i in range(7):
        _image(tmp_path / "images" / f"extra{i}.jpg")
    with pytest.raises(FileNotFoundError, match=r"7 images have no label file: .*extra0.png"
                                                r".*, \.\.\."):
        datasets.folder(tmp_path)


def test_size_mismatch_and_colour_labels_are_errors(tmp_path):
    (tmp_path / "classes.txt").write_text("a\nb\n")
    _image(tmp_path / "images/x.png", hw=(6, 8))
    _label(tmp_path / "labels/x.png", np.ones((5, 8)))
    with pytest.raises(ValueError, match="labels are 8x5 but .*x.png is 8x6"):
        datasets.folder(tmp_path).read(0)
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / "labels/x.png")
    with pytest.raises(ValueError, match="mode RGB"):
        datasets.folder(tmp_path).read(0)


def test_decode_handles_grey_alpha_and_garbage(tmp_path):
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(grey).save(tmp_path / "g.png")
    np.testing.assert_array_equal(read_image(tmp_path / "g.png"), np.stack([grey] * 3, -1))
    rgba = np.random.default_rng(0).integers(0, 256, (3, 4, 4), np.uint8)
    Image.fromarray(rgba).save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), rgba[..., :3])
    rgb = rgba[..., :3].copy()
    ok, jpeg = cv2.imencode(".jpg", rgb[..., ::-1])
    assert decode_image(jpeg.tobytes()).shape == (3, 4, 3)
    with pytest.raises(ValueError, match="broken.jpg: not a decodable image"):
        decode_image(b"not an image", "broken.jpg")


def test_host_share_is_disjoint_complete_and_padded():
    items = list(range(10))
    shares = [host_share(items, i, 3) for i in range(3)]
    assert [len(s) for s in shares] == [4, 4, 4]
    valid = [item for share in shares for item, ok in share if ok]
    assert sorted(valid) == items
    assert shares[2] == [(2, True), (5, True), (8, True), (0, False)]
    steps = list(batches(shares[2], 3))
    assert [s[0] for s in steps] == [[2, 5, 8], [0, 2, 2]]
    assert [s[1].tolist() for s in steps] == [[True] * 3, [False] * 3]
    with pytest.raises(ValueError, match="process_index 3"):
        host_share(items, 3, 3)
