"""Which features of a TFDS dataset training reads as the image, the caption and the
nouns, and the parser that takes them out of a serialised example.

`config.data.tfds_fields` names them for the `tfds:` datasets of `config.data.datasets`
(converted folders always use input_pipeline.records' names):

    image           an Image feature, read undecoded (the pipeline decodes the crop only)
    caption         a Text feature, or one with several captions per image (a Sequence of
                    Text, or a Text inside a Sequence of dicts); "a/b" is feature b of a
    nouns           a Sequence of Text holding the caption's nouns; "" extracts them from
                    the caption while training
    caption_choice  with several captions: "first", or "seeded" (one drawn per example
                    from the example's seed, so a resumed stream draws the same)

e.g. coco_captions: image="image", caption="captions/text", nouns="".
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping

CAPTION_CHOICES = ("first", "seeded")


@dataclasses.dataclass(frozen=True)
class Fields:
    image: str
    caption: str
    nouns: str  # "" when the dataset holds none
    caption_choice: str = "first"


CONVERTED = Fields("image", "caption", "nouns")  # input_pipeline.records' features
CONVERTED_WITHOUT_NOUNS = Fields("image", "caption", "")


def from_config(tfds_fields: Mapping[str, str]) -> Fields:
    fields = Fields(**dict(tfds_fields))
    if fields.caption_choice not in CAPTION_CHOICES:
        raise ValueError(f"data.tfds_fields.caption_choice={fields.caption_choice!r}; "
                         f"expected one of {CAPTION_CHOICES}.")
    if not fields.image or not fields.caption:
        raise ValueError(f"data.tfds_fields={dict(tfds_fields)}: image and caption must "
                         "name features.")
    return fields


def _feature(features, path: str, dataset: str):
    """The feature at "a/b" (through Sequences of dicts), or a ValueError naming the
    dataset's features."""
    import tensorflow_datasets as tfds

    feature = features
    for part in path.split("/"):
        if isinstance(feature, tfds.features.Sequence):
            feature = feature.feature
        if not isinstance(feature, tfds.features.FeaturesDict) or part not in feature:
            raise ValueError(f"{dataset}: no feature {path!r} (data.tfds_fields); its "
                             f"features are {features}")
        feature = feature[part]
    return feature


def _decoders(path: str):
    """TFDS decoders that leave the image at `path` encoded."""
    import tensorflow_datasets as tfds

    decoders = tfds.decode.SkipDecoding()
    for part in reversed(path.split("/")):
        decoders = {part: decoders}
    return decoders


def _at(example, path: str):
    for part in path.split("/"):
        example = example[part]
    return example


def parser(features, fields: Fields, dataset: str):
    """(serialised example, int64 [2] seed) -> {"image": encoded bytes, "caption": string
    scalar, and "nouns": string [n] when fields.nouns names them}."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    image = _feature(features, fields.image, dataset)
    if not isinstance(image, tfds.features.Image):
        raise ValueError(f"{dataset}: feature {fields.image!r} is {type(image).__name__}, "
                         "not an Image (data.tfds_fields.image)")
    for path in (fields.caption, fields.nouns):
        if path:
            _feature(features, path, dataset)
    decoders = _decoders(fields.image)

    def parse(serialized, seed):
        example = features.deserialize_example(serialized, decoders=decoders)
        caption = _at(example, fields.caption)
        if caption.shape.rank == 1:  # several; none raises (the example is skipped)
            count = tf.shape(caption, out_type=tf.int32)[0]
            if fields.caption_choice == "first":
                index = tf.constant(0)
            else:
                index = tf.random.stateless_uniform([], seed, maxval=count, dtype=tf.int32)
            caption = tf.gather(caption, index)
        elif caption.shape.rank != 0:
            raise ValueError(f"{dataset}: feature {fields.caption!r} has shape "
                             f"{caption.shape}; a caption is a string or a list of them")
        out = {"image": _at(example, fields.image), "caption": caption}
        if fields.nouns:
            out["nouns"] = tf.reshape(_at(example, fields.nouns), [-1])
        return out
    return parse
