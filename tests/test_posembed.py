"""Position-embedding resize must match PyTorch's bicubic interpolate."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from groupvit_jax.models.posembed import bicubic_resize_matrix, resize_pos_embed

SRC = (14, 14)
C = 384


def _grid_input(scale: float, seed: int = 0) -> np.ndarray:
    """Random [1, C, 14, 14] float32 grid (PyTorch layout)."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((1, C, *SRC)) * scale).astype(np.float32)


def _to_tokens(grid: np.ndarray) -> np.ndarray:
    """[1, C, h, w] -> [1, h*w, C], row-major over the grid."""
    _, c, h, w = grid.shape
    return grid.transpose(0, 2, 3, 1).reshape(1, h * w, c)


def _torch_reference(grid: np.ndarray, dst, dtype=torch.float32) -> np.ndarray:
    out = F.interpolate(
        torch.from_numpy(grid).to(dtype), size=dst, mode="bicubic", align_corners=False
    )
    return _to_tokens(out.numpy())


DST_GRIDS = [(28, 28), (28, 42), (14, 14), (7, 9)]  # 448x448, 448x672, identity, down


@pytest.mark.parametrize("dst", DST_GRIDS)
def test_matches_torch_float32_at_pos_embed_scale(dst):
    # Real position embeddings have magnitude ~0.02.
    grid = _grid_input(0.02)
    want = _torch_reference(grid, dst)
    got = resize_pos_embed(jnp.asarray(_to_tokens(grid)), SRC, dst)
    assert got.dtype == jnp.float32
    assert got.shape == (1, dst[0] * dst[1], C)
    np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("dst", DST_GRIDS)
def test_matches_torch_at_unit_scale(dst):
    grid = _grid_input(1.0)
    got = np.asarray(resize_pos_embed(jnp.asarray(_to_tokens(grid)), SRC, dst))
    assert got.dtype == np.float32
    # Against torch's float64 kernel (same formula, negligible rounding): 1e-6.
    want64 = _torch_reference(grid, dst, torch.float64)
    np.testing.assert_allclose(got, want64, rtol=0, atol=1e-6)
    # torch's float32 kernel rounds the source coordinate (e.g. 14/42) and the
    # cubic weights to float32, which moves its own output by up to ~4e-6 from
    # its float64 result on unit-scale input; allow for that, no more.
    want32 = _torch_reference(grid, dst)
    np.testing.assert_allclose(got, want32, rtol=0, atol=1e-5)


@pytest.mark.parametrize("dst", DST_GRIDS)
def test_matrices_match_torch_float64(dst):
    # The float64 matrices reproduce torch's float64 bicubic to rounding.
    grid = _grid_input(1.0).astype(np.float64)
    mh = bicubic_resize_matrix(SRC[0], dst[0])
    mw = bicubic_resize_matrix(SRC[1], dst[1])
    got = np.einsum("oh,bchw,pw->bcop", mh, grid, mw)
    want = F.interpolate(
        torch.from_numpy(grid), size=dst, mode="bicubic", align_corners=False
    ).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_identity_returns_input():
    x = jnp.asarray(_to_tokens(_grid_input(1.0)))
    assert resize_pos_embed(x, SRC, SRC) is x
    np.testing.assert_array_equal(bicubic_resize_matrix(14, 14), np.eye(14))


@pytest.mark.parametrize("n_in,n_out", [(14, 28), (14, 42), (14, 7), (14, 9), (1, 5), (5, 1)])
def test_matrix_rows_sum_to_one(n_in, n_out):
    m = bicubic_resize_matrix(n_in, n_out)
    assert m.shape == (n_out, n_in)
    assert m.dtype == np.float64
    np.testing.assert_allclose(m.sum(axis=1), 1.0, rtol=0, atol=1e-12)


def test_works_under_jit():
    grid = _grid_input(1.0, seed=1)
    x = jnp.asarray(_to_tokens(grid))
    fn = jax.jit(resize_pos_embed, static_argnums=(1, 2))
    got = np.asarray(fn(x, SRC, (28, 42)))
    eager = np.asarray(resize_pos_embed(x, SRC, (28, 42)))
    np.testing.assert_allclose(got, eager, rtol=0, atol=1e-6)
    want = _torch_reference(grid, (28, 42), torch.float64)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_jax_image_resize_is_not_a_substitute():
    # jax.image.resize uses A = -0.5 and renormalises at borders: the trap.
    grid = _grid_input(1.0)
    want = _torch_reference(grid, (28, 28))
    hwc = jnp.asarray(grid[0].transpose(1, 2, 0))
    jax_out = jax.image.resize(hwc, (28, 28, C), method="bicubic")
    jax_tokens = np.asarray(jax_out).reshape(1, 28 * 28, C)
    assert np.max(np.abs(jax_tokens - want)) > 1e-4


def test_bad_arguments_raise():
    x = jnp.zeros((1, 196, 8), jnp.float32)
    with pytest.raises(ValueError, match="rank 3"):
        resize_pos_embed(jnp.zeros((196, 8)), SRC, (28, 28))
    with pytest.raises(ValueError, match="tokens"):
        resize_pos_embed(jnp.zeros((1, 197, 8)), SRC, (28, 28))
    with pytest.raises(ValueError, match="positive"):
        resize_pos_embed(x, SRC, (0, 28))
    with pytest.raises(ValueError, match="positive"):
        resize_pos_embed(x, (-14, -14), (28, 28))
    with pytest.raises(ValueError, match="pair"):
        resize_pos_embed(x, SRC, 28)
    with pytest.raises(ValueError, match="positive"):
        bicubic_resize_matrix(0, 5)
    with pytest.raises(ValueError, match="positive"):
        bicubic_resize_matrix(5, -1)
