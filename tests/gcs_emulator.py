"""A local Cloud Storage server for the tests: gcp-storage-emulator on a free 127.0.0.1
port, and the settings that point every client at it and nowhere else.

    with Emulator(bucket="b", log_dir=tmp) as gcs:
        subprocess.run(gcs.command("groupvit_jax.train", "--workdir=gs://b/run"), env=gcs.env)
        assert gcs.refused() == []

Clients and how they are redirected (`Emulator.env`):
- gcsfs (epath's gs:// backend with EPATH_USE_TF=false, and the tests' own listing):
  STORAGE_EMULATOR_HOST; anonymous (FSSPEC_GS_TOKEN=anon), so it never looks for
  credentials; GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false: its bucket-type lookup is a gRPC
  call the emulator does not serve.
- TensorStore (Orbax's array files): TENSORSTORE_GCS_HTTP_URL, and a fixed token
  (GOOGLE_AUTH_TOKEN_FOR_TESTING) so it looks for no credentials.
- Google's auth libraries: NO_GCE_CHECK=true and the metadata server's address
  (GCE_METADATA_HOST / _IP / _ROOT) on a closed loopback port; no credentials file.
- TensorFlow's own GCS file system (tf.io.gfile: TensorBoard's writer, tf.data) has no
  endpoint setting: it is kept off gs:// (groupvit_jax/train/README.md says so).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests import loopback_only

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Emulator:
    """Starts the emulator (in memory, `bucket` created) on enter, stops it on exit."""

    def __init__(self, bucket: str, log_dir: Path):
        self.bucket = bucket
        self.log_dir = Path(log_dir)
        self.refusals = self.log_dir / "refused_connections.txt"
        self.port = _free_port()
        closed_port = _free_port()  # nothing listens there: a metadata probe fails at once
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if k != "GOOGLE_APPLICATION_CREDENTIALS"},
            "STORAGE_EMULATOR_HOST": self.url,
            "FSSPEC_GS_TOKEN": "anon", "FSSPEC_GCS_TOKEN": "anon",
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
            "EPATH_USE_TF": "false",
            "TENSORSTORE_GCS_HTTP_URL": self.url,
            "GOOGLE_AUTH_TOKEN_FOR_TESTING": "anonymous",
            "NO_GCE_CHECK": "true",
            "GCE_METADATA_HOST": f"127.0.0.1:{closed_port}",
            "GCE_METADATA_IP": f"127.0.0.1:{closed_port}",
            "GCE_METADATA_ROOT": f"127.0.0.1:{closed_port}",
            "CLOUDSDK_CONFIG": str(self.log_dir / "no_gcloud_config"),
            "GOOGLE_CLOUD_PROJECT": "emulated",
            loopback_only.LOG_ENV: str(self.refusals),
            "PYTHONUNBUFFERED": "1",
        }
        self._process = None

    def __enter__(self) -> "Emulator":
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / "emulator.log", "w") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "tests.storage_emulator", "start", "--host=127.0.0.1",
                 f"--port={self.port}", "--in-memory", f"--default-bucket={self.bucket}",
                 "-q"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(self.url + "/", timeout=2):
                    return self
            except OSError:
                if self._process.poll() is not None or time.time() > deadline:
                    self.__exit__()
                    raise RuntimeError("the storage emulator did not start: "
                                       + (self.log_dir / "emulator.log").read_text()[-2000:])
                time.sleep(0.2)

    def __exit__(self, *_) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def command(self, module: str, *args: str) -> list[str]:
        """`python -m MODULE ARGS` under tests/loopback_only.py."""
        return [sys.executable, "-m", "tests.loopback_only", module, *args]

    def refused(self) -> list[str]:
        """The connections and look-ups off loopback that were refused so far."""
        return self.refusals.read_text().splitlines() if self.refusals.exists() else []
