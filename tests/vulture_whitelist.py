"""Names that tests/test_layout.py's dead-code check (vulture) cannot see being used:
read by a library rather than by our code. Not imported by anything; vulture reads it."""
# tf.data.Options attributes, read by TensorFlow.
_.private_threadpool_size
_.max_intra_op_parallelism
_.experimental_symbolic_checkpoint
# The tokenizers library reads its Tokenizer's pre_tokenizer.
_.pre_tokenizer
# Flax calls setup(); Python calls a module's __getattr__.
_.setup
__getattr__
# A pytest fixture requested by name only.
toy_nltk_data
# pytest hooks in tests/conftest.py, called by pytest.
pytest_collection_modifyitems
pytest_unconfigure
# A config key read by name from the ConfigDict (ExtraLosses.from_config).
_.segment_noun_words
# The storage emulator's Response.status, read by the emulator (tests/storage_emulator.py).
_.status
