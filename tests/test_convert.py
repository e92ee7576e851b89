"""The converter on small generated inputs of each format, read back with tf.data and
TFDS; the migration of datasets written before the TFDS metadata."""
import collections
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from input_pipeline import convert, records

REPO = Path(__file__).resolve().parents[1]


def _pixels(width, height, seed):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _encode(pixels, fmt):
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt)
    return out.getvalue()


DOG = _pixels(40, 30, 0)
CATS = _pixels(24, 36, 1)
BIRD = _pixels(16, 12, 2)
FOX = _pixels(20, 16, 3)
JPEG_DOG = _encode(DOG, "JPEG")
PNG_CATS = _encode(CATS, "PNG")
PNG_BIRD = _encode(BIRD, "PNG")
WEBP_FOX = _encode(FOX, "WEBP")
SMALL_JPEG = _encode(_pixels(20, 20, 4), "JPEG")
TRUNCATED = _encode(_pixels(40, 30, 5), "JPEG")[:400]
GARBAGE = b"this is not an image at all"

# key -> (image bytes, file extension, caption or None).
USABLE = {
    "dog": (JPEG_DOG, "jpg", "  A dog is running on the beach.\n"),
    "cats": (PNG_CATS, "png", "two cats sleeping"),
    "bird": (PNG_BIRD, "png", "a bird"),
}
# The nouns written by hand: dog/NN is/VBZ running/VBG beach/NN; cats/NNS sleeping/VBG.
NOUNS = {"dog": [b"dog", b"is", b"running", b"beach"], "cats": [b"cats", b"sleeping"],
         "bird": [b"bird"], "fox": [b"fox", b"snow"]}
UNUSABLE = {
    "truncated": (TRUNCATED, "jpg", "a truncated photo", "undecodable"),
    "garbage": (GARBAGE, "jpg", "noise", "undecodable"),
    "blank": (SMALL_JPEG, "jpg", "  \n", "empty_caption"),
    "alone": (SMALL_JPEG, "jpg", None, "missing_caption"),
}


def _tar(path, members):
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _members(key, image, extension, caption, caption_as="txt"):
    members = [(f"{key}.{extension}", image)]
    if caption is not None and caption_as == "txt":
        members.append((f"{key}.txt", caption.encode()))
    elif caption is not None:
        members.append((f"{key}.json", json.dumps({"caption": caption, "url": "x"}).encode()))
    return members


@pytest.fixture(scope="module")
def webdataset_inputs(tmp_path_factory):
    """Two img2dataset-like tars; 'cats' has its caption in .json, 'fox' is WebP."""
    folder = tmp_path_factory.mktemp("wds") / "shards"
    folder.mkdir()
    _tar(folder / "00000.tar",
         _members("dog", *USABLE["dog"]) + _members("cats", *USABLE["cats"], caption_as="json")
         + _members("truncated", *UNUSABLE["truncated"][:3])
         + _members("fox", WEBP_FOX, "webp", "a fox in the snow"))
    _tar(folder / "00001.tar", [m for key in ("garbage", "blank", "alone")
                                for m in _members(key, *UNUSABLE[key][:3])]
         + _members("bird", *USABLE["bird"]))
    return folder


@pytest.fixture(scope="module")
def folder_input(tmp_path_factory):
    folder = tmp_path_factory.mktemp("folder") / "toy"
    places = {"dog": "", "cats": "sub/", "bird": "sub/deeper/"}
    for key, (image, extension, caption, *_) in {**USABLE, **UNUSABLE}.items():
        path = folder / f"{places.get(key, '')}{key}.{extension}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image)
        if caption is not None:
            path.with_suffix(".txt").write_text(caption)
    return folder


@pytest.fixture(scope="module")
def csv_input(tmp_path_factory):
    """pairs.csv with relative paths (one absolute), an empty caption cell and a row
    naming a file that does not exist."""
    folder = tmp_path_factory.mktemp("csv")
    (folder / "images").mkdir()
    lines = ["filepath,caption"]
    for key, (image, extension, caption, *_) in {**USABLE, **UNUSABLE}.items():
        (folder / "images" / f"{key}.{extension}").write_bytes(image)
        path = f"images/{key}.{extension}"
        if key == "bird":
            path = str(folder / path)
        lines.append(f'{path},"{caption or ""}"')
    lines.append("images/ghost.jpg,a missing file")
    (folder / "pairs.csv").write_text("\n".join(lines) + "\n")
    return folder / "pairs.csv"


def _read(manifest):
    """[(shard file, [example dict])] read with tf.data and the schema's parser."""
    import tensorflow as tf
    tf.config.set_visible_devices([], "GPU")
    shards = []
    for shard in manifest["shards"]:
        dataset = tf.data.TFRecordDataset(shard["path"]).map(records.parse_example)
        shards.append((shard["file"], [
            {"id": e["id"].numpy().decode(), "image": e["image"].numpy(),
             "caption": e["caption"].numpy().decode(), "nouns": list(e["nouns"].numpy())}
            for e in dataset]))
    return shards


def _report(out):
    return [json.loads(line) for line in (Path(out) / "skipped.jsonl").read_text().splitlines()]


def _check(manifest, out, usable_ids, skipped_ids, skipped_inputs):
    """Every usable example exactly once, intact; every unusable one reported; the
    manifest's counts are those of the shards and the report."""
    shards = _read(manifest)
    examples = [e for _, shard in shards for e in shard]
    assert sorted(e["id"] for e in examples) == sorted(usable_ids.values())
    by_key = {key: next(e for e in examples if e["id"] == i) for key, i in usable_ids.items()}
    for key, example in by_key.items():
        if key in USABLE:
            image, _, caption = USABLE[key]
            assert example["caption"] == caption.strip()
            assert example["image"] == image
        assert example["nouns"] == NOUNS[key]
    import tensorflow as tf
    for key, pixels in (("cats", CATS), ("bird", BIRD)):
        np.testing.assert_array_equal(tf.io.decode_png(by_key[key]["image"]).numpy(), pixels)

    assert manifest["num_examples"] == len(examples)
    assert [s["num_examples"] for s in manifest["shards"]] == [len(s) for _, s in shards]
    report = _report(out)
    assert {r["id"]: r["reason"] for r in report} == {
        i: UNUSABLE[key][3] if key in UNUSABLE else "missing_image"
        for key, i in skipped_ids.items()}
    assert {r["id"]: r["input"] for r in report} == skipped_inputs
    counts = collections.Counter(r["reason"] for r in report)
    assert manifest["skipped"] == {**{r: counts[r] for r in convert.SKIP_REASONS},
                                   "report": "skipped.jsonl"}
    assert manifest["nouns"]["tagger"] == "pattern"


def test_webdataset(webdataset_inputs, tmp_path):
    manifest = convert.convert_dataset([str(webdataset_inputs / "*.tar")], "webdataset",
                                       tmp_path / "gcc3m", examples_per_shard=2,
                                       progress=False)
    usable = {"dog": "00000.tar/dog", "cats": "00000.tar/cats", "fox": "00000.tar/fox",
              "bird": "00001.tar/bird"}
    skipped = {"truncated": "00000.tar/truncated", "garbage": "00001.tar/garbage",
               "blank": "00001.tar/blank", "alone": "00001.tar/alone"}
    inputs = {i: str(webdataset_inputs / i.split("/")[0]) for i in skipped.values()}
    _check(manifest, tmp_path / "gcc3m", usable, skipped, inputs)
    assert manifest["name"] == "gcc3m" and manifest["source"]["kind"] == "webdataset"
    # Shard k holds unit 0's examples in tar order, then unit 1's.
    assert [(f, [e["id"] for e in s]) for f, s in _read(manifest)] == [
        ("train-00000-of-00003.tfrecord", ["00000.tar/dog", "00000.tar/cats"]),
        ("train-00001-of-00003.tfrecord", ["00000.tar/fox"]),
        ("train-00002-of-00003.tfrecord", ["00001.tar/bird"])]
    # WebP is re-encoded as JPEG, which the training reader decodes.
    fox = next(e for _, s in _read(manifest) for e in s if e["id"] == "00000.tar/fox")
    stored = Image.open(io.BytesIO(fox["image"]))
    assert stored.format == "JPEG" and stored.size == (20, 16)


def test_folder(folder_input, tmp_path):
    manifest = convert.convert_dataset([str(folder_input)], "folder", tmp_path / "out",
                                       name="toy", progress=False)
    usable = {"dog": "toy/dog.jpg", "cats": "toy/sub/cats.png",
              "bird": "toy/sub/deeper/bird.png"}
    skipped = {k: f"toy/{k}.{UNUSABLE[k][1]}" for k in UNUSABLE}
    _check(manifest, tmp_path / "out", usable, skipped,
           {i: str(folder_input) for i in skipped.values()})
    assert manifest["name"] == "toy"


def test_csv(csv_input, tmp_path):
    manifest = convert.convert_dataset([str(csv_input)], "csv", tmp_path / "out",
                                       progress=False)
    keys = [*USABLE, *UNUSABLE, "ghost"]
    ids = {key: f"pairs.csv/{row}" for row, key in enumerate(keys)}
    # A CSV has no "no caption": an empty cell is an empty caption.
    report = {r["id"]: r["reason"] for r in _report(tmp_path / "out")}
    assert report.pop(ids["alone"]) == "empty_caption"
    assert report.pop(ids["blank"]) == "empty_caption"
    assert report == {ids["truncated"]: "undecodable", ids["garbage"]: "undecodable",
                      ids["ghost"]: "missing_image"}
    examples = [e for _, s in _read(manifest) for e in s]
    assert sorted(e["id"] for e in examples) == sorted(ids[k] for k in USABLE)
    assert {e["id"]: e["image"] for e in examples} == {ids[k]: USABLE[k][0] for k in USABLE}
    assert manifest["skipped"]["empty_caption"] == 2
    assert manifest["num_examples"] == 3


def test_tsv_column_overrides_and_literal_quotes(tmp_path):
    (tmp_path / "a.png").write_bytes(PNG_BIRD)
    (tmp_path / "pairs.tsv").write_text('id\tpicture\tsentence\n7\ta.png\t"Quoted" bird\n')
    with pytest.raises(ValueError, match=r"none of the columns \['id', 'picture', 'sentence'"):
        convert.convert_dataset([str(tmp_path / "pairs.tsv")], "csv", tmp_path / "x",
                                progress=False)
    manifest = convert.convert_dataset([str(tmp_path / "pairs.tsv")], "csv", tmp_path / "out",
                                       image_column="picture", progress=False)
    [(_, [example])] = _read(manifest)
    assert example["caption"] == '"Quoted" bird' and example["image"] == PNG_BIRD


def test_delimiter_sniffed_for_other_extensions(tmp_path):
    (tmp_path / "a.png").write_bytes(PNG_BIRD)
    (tmp_path / "pairs.txt").write_text("caption;image\nbird, small; a.png\n")
    manifest = convert.convert_dataset([str(tmp_path / "pairs.txt")], "csv", tmp_path / "out",
                                       progress=False)
    [(_, [example])] = _read(manifest)
    assert (example["id"], example["caption"]) == ("pairs.txt/0", "bird, small")


def test_resize_short_side(folder_input, tmp_path):
    manifest = convert.convert_dataset([str(folder_input)], "folder", tmp_path / "out",
                                       resize_short_side=20, progress=False)
    images = {e["id"]: e["image"] for _, s in _read(manifest) for e in s}
    # 40x30 -> 27x20 (40 * 20/30 = 26.7); 24x36 -> 20x30; 16x12 is already small enough.
    for example_id, size in (("toy/dog.jpg", (27, 20)), ("toy/sub/cats.png", (20, 30))):
        stored = Image.open(io.BytesIO(images[example_id]))
        assert (stored.format, stored.size) == ("JPEG", size)
    assert images["toy/sub/deeper/bird.png"] == PNG_BIRD
    assert manifest["image"] == {"resize_short_side": 20}


def test_refuses_to_overwrite_then_replaces(folder_input, tmp_path):
    out = tmp_path / "data" / "toy"
    convert.convert_dataset([str(folder_input)], "folder", out, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(FileExistsError, match="overwrite"):
        convert.convert_dataset([str(folder_input)], "folder", out, examples_per_shard=1,
                                progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    manifest = convert.convert_dataset([str(folder_input)], "folder", out,
                                       examples_per_shard=1, overwrite=True, progress=False)
    assert len(manifest["shards"]) == 3
    assert sorted(p.name for p in out.iterdir()) == [
        "dataset_info.json", "features.json", "manifest.json", "skipped.jsonl",
        *(records.shard_name("train", i, 3) for i in range(3))]
    assert [p.name for p in out.parent.iterdir()] == ["toy"]  # no build folder left behind


def test_nothing_usable_writes_nothing(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jpg").write_bytes(GARBAGE)
    (tmp_path / "in" / "a.txt").write_text("a caption")
    with pytest.raises(ValueError, match=r"no usable example.*'undecodable': 1"):
        convert.convert_dataset([str(tmp_path / "in")], "folder", tmp_path / "out",
                                progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        convert.convert_dataset([str(tmp_path / "nothing-here*.tar")], "webdataset",
                                tmp_path / "out", progress=False)
    (tmp_path / "broken.tar").write_bytes(b"\0" * 100 + b"not a tar")
    with pytest.raises(ValueError, match="broken.tar: unreadable tar"):
        convert.convert_dataset([str(tmp_path / "broken.tar")], "webdataset",
                                tmp_path / "out", progress=False)


def _layout(out):
    manifest = records.read_manifest(out)
    return ([(f, [(e["id"], e["image"], e["nouns"]) for e in s]) for f, s in _read(manifest)],
            _report(out))


def test_cli_with_two_workers_writes_what_one_does(webdataset_inputs, tmp_path):
    convert.convert_dataset([str(webdataset_inputs / "*.tar")], "webdataset", tmp_path / "one",
                            examples_per_shard=1, tagger=None, progress=False)
    result = subprocess.run(
        [sys.executable, "-m", "input_pipeline.convert", "--input",
         str(webdataset_inputs / "*.tar"), "--format", "webdataset", "--out",
         str(tmp_path / "two"), "--name", "mine", "--examples_per_shard", "1",
         "--tagger", "none", "--workers", "2"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "wrote 4 examples in 4 shards" in result.stdout
    assert "convert: 2/2 units, 8 examples (4 skipped)" in result.stderr
    assert _layout(tmp_path / "two") == _layout(tmp_path / "one")
    manifest = records.read_manifest(tmp_path / "two")
    assert manifest["name"] == "mine"
    assert manifest["nouns"] == {"tagger": None, "version": None}
    assert [e["nouns"] for _, s in _read(manifest) for e in s] == [[], [], [], []]


def _tree(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _convert_cli(*args):
    return subprocess.run([sys.executable, "-m", "input_pipeline.convert", "--quiet", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("out", ["input", "inside_input", "holding_input"])
def test_overwrite_never_touches_the_inputs(tmp_path, out):
    inputs = tmp_path / "photos"
    for key, (image, extension, caption) in USABLE.items():
        (inputs / "sub").mkdir(parents=True, exist_ok=True)
        (inputs / "sub" / f"{key}.{extension}").write_bytes(image)
        (inputs / "sub" / f"{key}.txt").write_text(caption)
    out_dir = {"input": inputs, "inside_input": inputs / "sub",
               "holding_input": tmp_path}[out]
    before = _tree(tmp_path)
    result = _convert_cli("--input", str(inputs), "--format", "folder", "--out", str(out_dir),
                          "--overwrite")
    assert result.returncode == 3, result.stderr
    assert "overlaps the input" in result.stderr and str(out_dir) in result.stderr
    assert _tree(tmp_path) == before


def test_overwrite_replaces_only_a_converted_dataset(folder_input, tmp_path):
    mine = tmp_path / "mine"
    (mine / "notes").mkdir(parents=True)
    (mine / "notes" / "thesis.tex").write_text("years of work")
    with pytest.raises(FileExistsError, match="replaces only a dataset this converter wrote"):
        convert.convert_dataset([str(folder_input)], "folder", mine, overwrite=True,
                                progress=False)
    assert _tree(mine) == {"notes/thesis.tex": b"years of work"}
    (mine / "manifest.json").write_text('{"format": "someone else\'s"}')
    with pytest.raises(FileExistsError, match="replaces only a dataset this converter wrote"):
        convert.convert_dataset([str(folder_input)], "folder", mine, overwrite=True,
                                progress=False)


def test_sigterm_during_conversion_then_rerun_succeeds(tmp_path):
    inputs = tmp_path / "many"
    inputs.mkdir()
    for i in range(400):
        (inputs / f"{i:03d}.png").write_bytes(_encode(_pixels(64, 64, i), "PNG"))
        (inputs / f"{i:03d}.txt").write_text(f"picture number {i}")
    out = tmp_path / "data" / "many"
    command = [sys.executable, "-m", "input_pipeline.convert", "--quiet", "--input",
               str(inputs), "--format", "folder", "--out", str(out), "--examples_per_shard",
               "20", "--tagger", "none"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        # Wait until the build has written a shard, then stop it.
        while not list((tmp_path / "data").glob(".many.building-*/part-*")):
            assert process.poll() is None, process.communicate()
        process.send_signal(subprocess.signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 143, stderr
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == []  # cleaned up
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert records.read_manifest(out)["num_examples"] == 400


def test_rerun_after_a_killed_conversion_removes_its_build(folder_input, tmp_path):
    out = tmp_path / "data" / "toy"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    abandoned = tmp_path / "data" / f".toy.building-{int(dead.stdout)}"
    abandoned.mkdir(parents=True)
    (abandoned / "part-000000-00000.tfrecord").write_bytes(b"half a shard")
    convert.convert_dataset([str(folder_input)], "folder", out, progress=False)
    assert sorted(p.name for p in out.parent.iterdir()) == ["toy"]


def _tfds_examples(out):
    """[(id, image, caption, nouns)] as TFDS reads the folder, in TFDS's order."""
    import tensorflow_datasets as tfds
    builder = tfds.builder_from_directory(str(out))
    ds = builder.as_dataset(split="train", shuffle_files=False,
                            decoders={"image": tfds.decode.SkipDecoding()})
    return [(e["id"].decode(), e["image"], e["caption"].decode(), list(e["nouns"]))
            for e in tfds.as_numpy(ds)]


def test_converted_folder_is_a_tfds_dataset_with_the_same_examples_in_order(
        webdataset_inputs, tmp_path):
    import tensorflow_datasets as tfds
    manifest = convert.convert_dataset([str(webdataset_inputs / "*.tar")], "webdataset",
                                       tmp_path / "gcc3m", examples_per_shard=2,
                                       progress=False)
    builder = tfds.builder_from_directory(str(tmp_path / "gcc3m"))
    assert builder.info.name == "gcc3m"
    assert builder.info.splits["train"].shard_lengths == [2, 1, 1]
    assert set(builder.info.features) == {"id", "image", "caption", "nouns"}
    ours = [(e["id"], e["image"], e["caption"], e["nouns"]) for _, s in _read(manifest) for e in s]
    assert _tfds_examples(tmp_path / "gcc3m") == ours
    # TFDS decodes the stored image itself (its Image feature), to the same pixels.
    decoded = next(iter(tfds.as_numpy(builder.as_dataset(split="train[1:2]"))))
    np.testing.assert_array_equal(decoded["image"], CATS)
    # TFDS's tools read it too.
    frame = tfds.as_dataframe(builder.as_dataset(split="train", shuffle_files=False), builder.info)
    assert [c.decode() for c in frame["caption"]] == [e[2] for e in ours]


def test_records_are_what_tfds_writes_for_the_features():
    """TFDS's own serialisation of an example parses to what ours does, and ours parses with
    TFDS's parser: the shards need no rewriting to be a TFDS dataset."""
    import tensorflow as tf
    features = records.features()
    for words in (["dog", "beach"], []):
        theirs = features.serialize_example(
            {"id": "a/1", "image": PNG_BIRD, "caption": "a bird", "nouns": words})
        ours = records.encode_example("a/1", PNG_BIRD, "a bird", words)
        assert tf.train.Example.FromString(theirs) == tf.train.Example.FromString(ours)
        parsed = records.parse_example(tf.constant(ours))
        assert (parsed["id"].numpy(), parsed["image"].numpy(), parsed["caption"].numpy(),
                list(parsed["nouns"].numpy())) == (b"a/1", PNG_BIRD, b"a bird",
                                                   [w.encode() for w in words])


def test_migration_makes_an_old_dataset_a_tfds_dataset_in_place(folder_input, tmp_path):
    out = tmp_path / "toy"
    convert.convert_dataset([str(folder_input)], "folder", out, examples_per_shard=2,
                            progress=False)
    expected = _tfds_examples(out)
    shards = {p.name: p.read_bytes() for p in out.glob("*.tfrecord")}
    # What the converter wrote before: the same shards, no TFDS metadata, format v1.
    (out / "dataset_info.json").unlink()
    (out / "features.json").unlink()
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "format": records.OLD_FORMAT}))
    with pytest.raises(ValueError, match=f"{records.MIGRATE} {out}"):
        records.read_manifest(out)
    result = subprocess.run([sys.executable, "-m", "input_pipeline.add_tfds_metadata",
                             "--dataset", str(out)], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"{out}: a TFDS dataset now (3 examples in 2 shards)" in result.stdout
    assert _tfds_examples(out) == expected
    assert {p.name: p.read_bytes() for p in out.glob("*.tfrecord")} == shards
    assert records.read_manifest(out)["format"] == records.FORMAT
    again = subprocess.run([sys.executable, "-m", "input_pipeline.add_tfds_metadata",
                            "--dataset", str(out)], cwd=REPO, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 3 and "only 'groupvit_jax.records/v1' datasets" in again.stderr
