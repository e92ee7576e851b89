"""Tiny TFDS datasets built offline and left as `tfds build` leaves them prepared
(DATA_DIR/NAME/1.0.0/), for the `tfds:` readers' tests."""
import numpy as np
import tensorflow_datasets as tfds

CAPTIONS = "tiny_captions"


def write_prepared(data_dir, name: str, features, split: str, examples: list[dict]) -> None:
    """`examples` in this order (TFDS's write-time shuffling off)."""
    keyed = list(enumerate(examples))  # TFDS takes (key, example) pairs
    tfds.dataset_builders.store_as_tfds_dataset(
        name=name, version="1.0.0", features=features, split_datasets={split: keyed},
        data_dir=str(data_dir), disable_shuffling=True)


def write_captions(data_dir, count: int) -> None:
    """coco_captions' layout: an image and a Sequence of {"id", "text"} captions, no nouns.
    Example i's captions: "a dog number 0 i", then "a red cat i"."""
    features = tfds.features.FeaturesDict({
        "image": tfds.features.Image(encoding_format="jpeg"),
        "captions": tfds.features.Sequence({"id": np.int64, "text": tfds.features.Text()})})
    rng = np.random.default_rng(0)
    examples = [{"image": rng.integers(0, 255, (40, 48, 3), np.uint8),
                 "captions": [{"id": 2 * i, "text": f"a dog number 0 {i}"},
                              {"id": 2 * i + 1, "text": f"a red cat {i}"}]}
                for i in range(count)]
    write_prepared(data_dir, CAPTIONS, features, "train", examples)
