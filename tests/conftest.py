"""Test set-up: CPU only, float32 matmuls at full precision, reproducible torch; shared
fixtures; the heaviest test files first."""
import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Compile time dominates these small programs on CPU: skip LLVM's expensive passes.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0 "
                      "--xla_llvm_disable_expensive_passes=true")
# One persistent compilation cache per test run, in a fresh folder: the xdist workers and
# the binaries the tests start inherit it, so a program one of them compiled (a train
# step, the tiny model's window pass) is loaded, not compiled again, by the next one that
# builds the very same program. The folder goes with the process that made it.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="groupvit_jax_tests_xla_")
    os.environ["GROUPVIT_JAX_TESTS_CACHE_OWNER"] = str(os.getpid())
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
# gs:// paths go through epath's gcsfs backend, the one that can be pointed at the local
# storage emulator (tests/gcs_emulator.py); TensorFlow's cannot. gcsfs's plain client: its
# bucket-type lookup is a gRPC call the emulator does not serve. Both are read once.
os.environ.setdefault("EPATH_USE_TF", "false")
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")

import pytest  # noqa: E402

from tests.eval_data import write_folder_dataset  # noqa: E402


@pytest.fixture(scope="session")
def folder_dataset(tmp_path_factory):
    """A three-image segmentation set in the "folder" layout (tests/eval_data.py); read only."""
    return write_folder_dataset(tmp_path_factory.mktemp("folder"))


# Test files by their measured time on 2 cores, longest first. `make test` runs two xdist
# workers that each take whole files (`--dist loadfile`, setup.cfg): starting the longest
# files first keeps both busy to the end instead of leaving one with the toy world's
# end-to-end run while the other idles. Files not named here follow, in their usual order.
LONGEST_FIRST = (
    "test_toyworld.py", "test_multiprocess.py", "test_train.py", "test_train_faults.py",
    "test_kill.py", "test_train_step.py", "test_multihost.py", "test_train_dataset.py",
    "test_accumulation.py", "test_hf_parity.py", "test_model.py", "test_bad_inputs.py",
    "test_eval_sharding.py", "test_checkpoints.py", "test_eval_classification.py",
    "test_eval_binary.py", "test_eval_protocol.py", "test_convert.py", "test_demo.py",
    "test_stream_faults.py", "test_mixed_precision.py", "test_vit_baseline.py",
    "test_augment.py", "test_kmeans.py", "test_losses.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: file order kept


def pytest_unconfigure(config):
    if os.environ.get("GROUPVIT_JAX_TESTS_CACHE_OWNER") == str(os.getpid()):
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
