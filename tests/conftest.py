"""Test set-up: CPU only, float32 matmuls at full precision, reproducible torch."""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
