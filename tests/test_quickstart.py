"""The README's main command (`make run` = groupvit_jax.quickstart) runs and draws."""
import numpy as np
from PIL import Image

from groupvit_jax import quickstart


def test_quickstart_groups_a_generated_scene(tmp_path, capsys):
    assert quickstart.main(["--size", "96", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "55.7M parameters" in printed and "soft maps per stage: [(1, 64, 36), (1, 8, 64)]" in printed
    for name in ("input.png", "groups_stage1.png", "groups.png"):
        assert np.asarray(Image.open(tmp_path / name)).shape == (96, 96, 3)
