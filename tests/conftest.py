"""Test set-up: CPU only, float32 matmuls at full precision, reproducible torch."""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Compile time dominates these small programs on CPU: skip LLVM's expensive passes.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0 "
                      "--xla_llvm_disable_expensive_passes=true")

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
