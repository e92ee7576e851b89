"""One device mesh for data, train step and evaluators.

Axes: "data" (batch parallelism over all devices of all hosts) and "model"
(shards parameters and optimizer state, FSDP-style; the batch is split over it
too). The global batch is one array laid out over every device in mesh order.
"""
from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

BATCH_AXES = ("data", "model")


def make_mesh(model_axis: int = 1, devices=None) -> jax.sharding.Mesh:
    """data x model mesh over all devices; data = number of devices / model_axis."""
    devices = list(jax.devices() if devices is None else devices)
    if model_axis < 1 or len(devices) % model_axis:
        raise ValueError(f"mesh.model={model_axis} must divide the {len(devices)} devices.")
    shape = (len(devices) // model_axis, model_axis)
    # Auto axes: shardings propagate through the model as in pjit (Explicit is the
    # new default of jax.make_mesh and would need annotations everywhere).
    return jax.make_mesh(shape, ("data", "model"), axis_types=(AxisType.Auto,) * 2,
                         devices=devices)


def batch_sharding(mesh, ndim: int = 1) -> NamedSharding:
    """Leading (batch) axis over every device."""
    return NamedSharding(mesh, P(BATCH_AXES, *([None] * (ndim - 1))))


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def param_sharding(leaf, mesh, min_size: int = 2**14) -> NamedSharding:
    """Shard a parameter's largest dimension divisible by the model axis; replicate
    small ones (norm scales, biases) where the collective would cost more than it saves."""
    n = mesh.shape["model"]
    shape = getattr(leaf, "shape", ())
    if n == 1 or np.prod(shape, dtype=np.int64) < min_size:
        return replicated(mesh)
    for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
        if shape[dim] % n == 0:
            spec = [None] * len(shape)
            spec[dim] = "model"
            return NamedSharding(mesh, P(*spec))
    return replicated(mesh)


def make_global_batch(local_batch: dict, mesh) -> dict:
    """Each host's slice of the batch -> global arrays sharded over the mesh."""
    def put(x):
        x = np.asarray(x)
        return jax.make_array_from_process_local_data(batch_sharding(mesh, x.ndim), x)
    return jax.tree.map(put, local_batch)


def host_max(values: tuple[int, ...]) -> tuple[int, ...]:
    """The elementwise maximum of small integers over all hosts (one all-gather), so
    every host compiles the same static shapes (e.g. the text tower's token lengths)."""
    if jax.process_count() == 1:
        return tuple(values)
    gathered = multihost_utils.process_allgather(np.asarray(values, np.int32))
    return tuple(int(v) for v in gathered.max(axis=0))
