"""The undecoded stream's saved position restores without hanging (TF 2.21's parallel
interleave does not: input_pipeline.train_dataset, where the files are read)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT_S = 240  # the check takes ~15 s; a restored stream that hangs never ends


def test_restored_streams_continue_and_never_hang(tmp_path):
    try:
        result = subprocess.run([sys.executable, "-m", "tests.reader_restore_check",
                                 str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                                timeout=LIMIT_S)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"a restored stream hung (no end after {LIMIT_S} s)") from None
    assert result.returncode == 0, result.stderr[-3000:]
    assert "restored streams continue exactly" in result.stdout
