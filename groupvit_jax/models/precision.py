"""Float32 results from bfloat16 matmuls, for the products that must not be rounded.

Under `dtype="bfloat16"` a matmul's inputs are bfloat16 and, by default, so is its
result. Where the result is a softmax's logits or feeds a BatchNorm (whose batch mean
cancels much of its input), the product asks for a float32 result instead:
accelerators accumulate in float32 anyway, only the final rounding goes.

At float32 (or float64) compute these are the plain operations: same program, same
bits.
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp


def accumulation_dtype(dtype) -> jnp.dtype:
    """The result dtype of a matmul over `dtype` inputs: at least float32."""
    return jnp.promote_types(dtype, jnp.float32)


def wide_einsum(spec: str, a, b):
    """jnp.einsum of two operands with a result of at least float32.

    The backward pass rounds the incoming float32 gradient to the operands' dtype
    first, so its two matmuls stay bfloat16 ones: a float32 gradient against a
    bfloat16 operand would make XLA upcast the operand and run them in float32.
    """
    dtype = jnp.result_type(a, b)
    if accumulation_dtype(dtype) == dtype:
        return jnp.einsum(spec, a, b)
    return _einsum_float32_result(spec, a, b)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _einsum_float32_result(spec, a, b):
    return jnp.einsum(spec, a, b, preferred_element_type=jnp.float32)


def _einsum_float32_result_fwd(spec, a, b):
    return _einsum_float32_result(spec, a, b), (a, b)


def _einsum_float32_result_bwd(spec, operands, grad):
    a, b = operands
    _, pull_back = jax.vjp(functools.partial(jnp.einsum, spec), a, b)
    return pull_back(grad.astype(jnp.result_type(a, b)))


_einsum_float32_result.defvjp(_einsum_float32_result_fwd, _einsum_float32_result_bwd)


def wide_dot_general(lhs, rhs, dimension_numbers, precision=None):
    """lax.dot_general whose result is at least float32 (Flax Dense's `dot_general`).
    Its backward matmuls run in float32 too: meant for small layers only."""
    return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                               preferred_element_type=accumulation_dtype(lhs.dtype))


def _cast_keeping_bias(inputs, kernel, bias, *, dtype):
    """Matmul operands in the compute dtype; the bias stays as wide as the result."""
    bias = None if bias is None else bias.astype(accumulation_dtype(dtype))
    return inputs.astype(dtype), kernel.astype(dtype), bias


# A Dense layer computing in its `dtype` but returning at least float32.
WideDense = functools.partial(nn.Dense, dot_general=wide_dot_general,
                              promote_dtype=_cast_keeping_bias)
