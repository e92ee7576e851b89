"""Zero-shot classification: folder layouts, and top-1/top-5 against a direct computation."""
import json

import ml_collections
import numpy as np
import pytest
from PIL import Image

import groupvit_jax as gv
from groupvit_jax.evaluation import eval_cls
from groupvit_jax.evaluation import registry
from groupvit_jax.evaluation import classification
from input_pipeline.templates import IMAGENET_7
from tests.tiny_pretrained import tiny_pretrained

CLASSES = ["cat", "dog", "grass", "sky", "car", "tree", "boat"]
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
# The tiny model crops 32 after resizing the short side to int(256 / 224 * 32) = 36:
# (width, height) -> resized (width, height) and the crop's (left, top), worked by hand.
# torchvision rounds offsets half to even: (43 - 32) / 2 = 5.5 -> 6.
SIZES = {(48, 40): ((43, 36), (6, 2)), (40, 60): ((36, 54), (2, 11)),
         (36, 36): ((36, 36), (2, 2)), (70, 45): ((56, 36), (12, 2))}


def _image(seed, size):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, 3)
    noise = rng.integers(-60, 60, (size[1], size[0], 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = gv.export(tiny_pretrained(seed=3), tmp_path_factory.mktemp("ckpt") / "tiny")
    return gv.load_pretrained(folder)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """14 images of varied sizes, two per class, as a class-per-subfolder tree."""
    root = tmp_path_factory.mktemp("train")
    out, sizes = [], list(SIZES)
    for i in range(2 * len(CLASSES)):
        label = i % len(CLASSES)
        path = root / CLASSES[label] / f"{i:02d}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(_image(i, sizes[i % len(sizes)])).save(path)
        out.append((path, label))
    return root, out


def _reference_scores(model, paths):
    """Cosines of each image with each class, computed one prompt and one image at a time."""
    classifier = []
    for name in CLASSES:
        per_template = [np.asarray(model.encode_text(model.tokenize([t.format(name)])))[0]
                        for t in IMAGENET_7]
        mean = np.mean(per_template, axis=0)
        classifier.append(mean / np.linalg.norm(mean))
    scores = []
    for path in paths:
        image = Image.open(path)
        resized, (left, top) = SIZES[image.size]
        pixels = np.asarray(image.resize(resized, Image.BILINEAR), np.float64) / 255
        pixels = (pixels[top:top + 32, left:left + 32] - MEAN) / STD
        embed = np.asarray(model.encode_image(pixels[None].astype(np.float32))["image_embeds"])[0]
        scores.append(np.asarray(classifier) @ (embed / np.linalg.norm(embed)))
    return np.array(scores)


def _accuracy(scores, labels, k):
    ranked = np.argsort(-scores, axis=1)
    return 100 * np.mean([label in ranked[i, :k] for i, label in enumerate(labels)])


def test_class_folders_match_direct_computation(model, files):
    root, entries = files
    dataset = classification.read_image_folder(root)
    assert dataset.class_names == tuple(sorted(CLASSES))
    by_path = dict(entries)
    assert [CLASSES[by_path[p]] for p in dataset.paths] == [
        dataset.class_names[label] for label in dataset.labels]
    # Round robin: the first 7 images (what --limit 7 keeps) are one of each class.
    assert dataset.labels.tolist() == list(range(7)) * 2

    result = classification.evaluate(model, dataset, batch_size=4)
    scores = _reference_scores(model, dataset.paths)
    # The reference scores CLASSES; the dataset's labels index the sorted names.
    order = [CLASSES.index(name) for name in dataset.class_names]
    scores = scores[:, order]
    ours = np.concatenate(list(classification.batch_scores(model, dataset, batch_size=4)))
    np.testing.assert_allclose(ours, scores, atol=2e-6)
    assert result["num_images"] == 14
    assert result["top1"] == pytest.approx(_accuracy(scores, dataset.labels, 1))
    assert result["top5"] == pytest.approx(_accuracy(scores, dataset.labels, 5))


def test_flat_folder_with_labels_file_counts_hits_exactly(model, files, tmp_path):
    """Labels chosen from the reference ranking: rank 1, rank 3 or rank 7 of each image,
    so top-1 and top-5 are known counts."""
    _, entries = files
    (tmp_path / "names.txt").write_text("\n".join(CLASSES) + "\n")
    paths = []
    for i, (src, _) in enumerate(entries):
        paths.append(tmp_path / "val" / f"ILSVRC2012_val_{i + 1:08d}.JPEG")
        paths[-1].parent.mkdir(exist_ok=True)
        Image.open(src).save(paths[-1], format="PNG")  # lossless, whatever the suffix
    ranked = np.argsort(-_reference_scores(model, paths), axis=1)
    ranks = [(0, 2, 6)[i % 3] for i in range(len(paths))]
    labels = [int(ranked[i, r]) for i, r in enumerate(ranks)]
    (tmp_path / "val.txt").write_text(
        "".join(f"{p.name} {label}\n" for p, label in zip(paths, labels)))

    dataset = classification.read_image_folder(tmp_path / "val", tmp_path / "names.txt",
                                               tmp_path / "val.txt")
    result = classification.evaluate(model, dataset, batch_size=4)
    assert result["top1"] == pytest.approx(100 * ranks.count(0) / 14)
    assert result["top5"] == pytest.approx(100 * (ranks.count(0) + ranks.count(2)) / 14)

    # The same through a CSV with a header, and a limit of 6 images (ranks 0,2,6,0,2,6).
    (tmp_path / "val.csv").write_text("image,label\n" + "".join(
        f"{p.name},{label}\n" for p, label in zip(paths, labels)))
    csv = classification.read_image_folder(tmp_path / "val", tmp_path / "names.txt",
                                           tmp_path / "val.csv")
    limited = classification.evaluate(model, csv, batch_size=4, limit=6)
    assert (limited["num_images"], limited["top1"], limited["top5"]) == (
        6, pytest.approx(100 * 2 / 6), pytest.approx(100 * 4 / 6))


def test_evaluator_and_binary_agree_with_evaluate(model, files, tmp_path):
    root, _ = files
    expected = classification.evaluate(model, classification.read_image_folder(root),
                                       batch_size=4)
    cfg = ml_collections.ConfigDict({"cls": {"kind": "classification", "every_steps": 1,
                                             "data_dir": str(root), "batch_size": 4}})
    [(name, _, run)] = registry.create(cfg, train_config=None)
    assert name == "cls"
    assert run(model) == {"top1": expected["top1"], "top5": expected["top5"]}

    ckpt = tmp_path / "ckpt"
    gv.export(model, ckpt)
    out = tmp_path / "results.json"
    assert eval_cls.main(["eval_cls", "--checkpoint", str(ckpt), "--data_dir", str(root),
                          "--batch_size", "4", "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert (written["top1"], written["top5"], written["num_images"]) == (
        expected["top1"], expected["top5"], 14)


def test_binary_reports_bad_paths(files, tmp_path, capsys):
    root, _ = files
    assert eval_cls.main(["eval_cls", "--checkpoint", str(tmp_path / "none.pth"),
                          "--data_dir", str(root)]) == 3
    assert "none.pth: no such file" in capsys.readouterr().err
    assert eval_cls.main(["eval_cls", "--checkpoint", str(tmp_path / "none.pth"),
                          "--data_dir", str(tmp_path / "nodata")]) == 3
    assert "nodata: data directory not found" in capsys.readouterr().err


def test_broken_layouts_name_the_file(files, tmp_path):
    root, entries = files
    with pytest.raises(FileNotFoundError, match="nowhere"):
        classification.read_image_folder(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="names.txt"):
        classification.read_image_folder(root, tmp_path / "names.txt")
    (tmp_path / "names.txt").write_text("cat\ndog\n")
    with pytest.raises(ValueError, match="names.txt has 2 class names.*7 class subfolders"):
        classification.read_image_folder(root, tmp_path / "names.txt")
    with pytest.raises(ValueError, match="needs a class names file"):
        classification.read_image_folder(root, None, tmp_path / "val.txt")
    with pytest.raises(FileNotFoundError, match="val.txt"):
        classification.read_image_folder(root, tmp_path / "names.txt", tmp_path / "val.txt")
    (tmp_path / "val.txt").write_text("a.jpg 0\nb.jpg 5\n")
    with pytest.raises(ValueError, match=r"val.txt:2: label 5 is outside \[0, 2\)"):
        classification.read_image_folder(root, tmp_path / "names.txt", tmp_path / "val.txt")
    (tmp_path / "val.txt").write_text(f"cat/missing.png 1\n{entries[0][0].relative_to(root)} 0\n")
    with pytest.raises(FileNotFoundError, match=r"val.txt: 1 of its 2 images are not in"):
        classification.read_image_folder(root, tmp_path / "names.txt", tmp_path / "val.txt")
    (tmp_path / "truth.txt").write_text("490\n361\n")  # the devkit's one-column format
    with pytest.raises(ValueError, match=r"truth.txt:1: expected 'IMAGE LABEL'"):
        classification.read_image_folder(root, tmp_path / "names.txt", tmp_path / "truth.txt")
    empty = tmp_path / "empty"
    (empty / "cat").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="hold no images"):
        classification.read_image_folder(empty)


def test_tfds_imagenet_layout_scores_what_the_folder_does(model, files, tmp_path, capsys):
    """A prepared TFDS dataset with imagenet2012's features (image, label, file_name),
    holding the folder's images in the folder's order: the same scores, top-1 and top-5."""
    import tensorflow_datasets as tfds

    from tests.tfds_data import write_prepared

    root, _ = files
    folder = classification.read_image_folder(root)
    features = tfds.features.FeaturesDict({
        "image": tfds.features.Image(encoding_format="png"),
        "label": tfds.features.ClassLabel(names=[n.replace(" ", "_") for n in folder.class_names]),
        "file_name": tfds.features.Text()})
    write_prepared(tmp_path / "tfds", "tiny_imagenet", features, "validation", [
        {"image": str(p), "label": int(label), "file_name": p.name}
        for p, label in zip(folder.paths, folder.labels)])

    dataset = classification.read_dataset("tfds:tiny_imagenet", tfds_data_dir=str(tmp_path / "tfds"))
    assert dataset.class_names == folder.class_names
    np.testing.assert_array_equal(dataset.labels, folder.labels)
    np.testing.assert_array_equal(
        np.concatenate(list(classification.batch_scores(model, dataset, batch_size=4))),
        np.concatenate(list(classification.batch_scores(model, folder, batch_size=4))))
    expected = classification.evaluate(model, folder, batch_size=4, limit=9)
    assert classification.evaluate(model, dataset, batch_size=4, limit=9) == expected

    ckpt = tmp_path / "ckpt"
    gv.export(model, ckpt)
    out = tmp_path / "results.json"
    args = ["eval_cls", "--checkpoint", str(ckpt), "--data_dir", "tfds:tiny_imagenet",
            "--tfds_data_dir", str(tmp_path / "tfds"), "--batch_size", "4", "--limit", "9"]
    assert eval_cls.main([*args, "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert (written["top1"], written["top5"], written["num_images"]) == (
        expected["top1"], expected["top5"], 9)
    assert eval_cls.main([*args[:4], "tfds:tiny_imagenet:train", *args[5:]]) == 3
    assert "no prepared split 'train' of 'tiny_imagenet'" in capsys.readouterr().err
