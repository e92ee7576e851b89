"""The tf.data input pipeline: image-text records, nouns, prompts, augmentation."""
