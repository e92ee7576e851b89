"""accelerator_check.sh scaled down on the CPU: every stage runs and the JSON holds the
train step's images/s per device and MFU and the evaluation's images/s."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_scaled_down_accelerator_check_writes_its_json(tmp_path):
    env = {**os.environ, "SCALE_DOWN": "1", "PYTHON": sys.executable}
    done = subprocess.run(["bash", "experiments/benchmarks/accelerator_check.sh", str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary) == {"parity", "timing"}
    assert all(stage["code"] == 0 for stage in summary.values()), summary
    assert "passed" in (tmp_path / "parity.txt").read_text()

    result = json.loads((tmp_path / "accelerator_check.json").read_text())
    assert result["scale_down"] is True and result["backend"] == "cpu"
    train = result["train"]
    assert train["dtype"] == "bfloat16" and train["batch"] == 4
    assert train["model"]["dtype"] == "bfloat16"
    assert train["text_lengths"] == [16, 16]   # the synthetic captions' bucket
    assert train["ours_s_spread"]["runs"] >= 3
    assert train["ours_s_spread"]["min"] <= train["ours_s_per_step"] <= train["ours_s_spread"]["max"]
    assert train["img_per_s_per_device"] == pytest.approx(4 / train["ours_s_per_step"])
    assert train["gflop_per_step"] > 0 and 0 < train["mfu"]
    assert train["mfu"] == pytest.approx(train["achieved_gflop_per_s"]
                                         / train["bf16_matmul_ceiling_gflop_per_s"])
    evaluation = result["eval"]
    assert evaluation["images"] == 2 and evaluation["images_per_s"] > 0
    assert len(evaluation["all_total_s"]) >= 3
