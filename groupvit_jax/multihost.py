"""Multi-host runs: when a binary calls jax.distributed.initialize(), and a check at start
that every host was given the same work.

A binary initialises when asked (--jax_distributed) or when its environment says it is
one of several processes, read from environment variables only (no metadata server):

  JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES > 1, JAX_PROCESS_ID   any launcher (this
      project's convention; jax itself reads only the address)
  SLURM_JOB_ID with SLURM_STEP_NUM_TASKS > 1                        a multi-task srun step
  TPU_WORKER_HOSTNAMES (or TPU_PROCESS_ADDRESSES) naming > 1 host,  a TPU pod on GKE, or
      or MEGASCALE_NUM_SLICES > 1                                   several slices

A Cloud TPU VM pod slice made by `gcloud compute tpus tpu-vm create` keeps its worker
list in the metadata server only: pass --jax_distributed there (tpu_pod.sh does).
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Mapping

import jax
import numpy as np
from jax.experimental import multihost_utils

_JAX_VARS = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def _integer(environ: Mapping[str, str], name: str) -> int:
    try:
        return int(environ.get(name) or 1)  # unset: one
    except ValueError:
        message = f"environment variable {name}={environ[name]!r} is not an integer."
        raise ValueError(message) from None


def _from_jax_vars(environ: Mapping[str, str]) -> dict | None:
    if _integer(environ, "JAX_NUM_PROCESSES") <= 1:
        return None
    missing = [name for name in _JAX_VARS if not environ.get(name)]
    if missing:
        raise ValueError(f"JAX_NUM_PROCESSES={environ['JAX_NUM_PROCESSES']} needs "
                         f"{' and '.join(missing)} set too.")
    return {"coordinator_address": environ["JAX_COORDINATOR_ADDRESS"],
            "num_processes": _integer(environ, "JAX_NUM_PROCESSES"),
            "process_id": _integer(environ, "JAX_PROCESS_ID")}


def _tpu_hosts(environ: Mapping[str, str]) -> int:
    names = environ.get("TPU_PROCESS_ADDRESSES") or environ.get("TPU_WORKER_HOSTNAMES") or ""
    return len([name for name in names.split(",") if name.strip()])


def distributed_args(explicit: bool, environ: Mapping[str, str] = os.environ) -> dict | None:
    """The keyword arguments for jax.distributed.initialize() ({}: jax detects the
    cluster itself), or None where this process runs alone (module doc)."""
    from_vars = _from_jax_vars(environ)
    if from_vars is not None:
        return from_vars
    if explicit:
        return {}
    if "SLURM_JOB_ID" in environ and _integer(environ, "SLURM_STEP_NUM_TASKS") > 1:
        return {}
    if _tpu_hosts(environ) > 1 or _integer(environ, "MEGASCALE_NUM_SLICES") > 1:
        return {}
    return None


def initialize(explicit: bool) -> None:
    """Calls jax.distributed.initialize() where `distributed_args` says to; once."""
    args = distributed_args(explicit)
    if args is not None and not jax.distributed.is_initialized():
        jax.distributed.initialize(**args)


def host_local(tree):
    """Arrays spanning several hosts (a training state) -> full copies on this host."""
    def local(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return multihost_utils.process_allgather(x, tiled=True)
        return x
    return jax.tree.map(local, tree)


def flag_facts(args) -> dict:
    """A binary's flag values by name, for `check_hosts_agree`."""
    return {name: args[name].value for name in args}


def _flat(facts: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """name -> canonical JSON of each leaf; nested mappings name their keys with dots."""
    out = {}
    for key, value in facts.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(_flat(value, f"{name}."))
        else:
            out[name] = json.dumps(value, sort_keys=True, default=str)
    return out


def _digest(text: str) -> np.ndarray:
    """uint32 [4]: the first 128 bits of text's SHA-256."""
    return np.frombuffer(hashlib.sha256(text.encode()).digest()[:16], np.uint32)


def check_hosts_agree(facts: Mapping[str, Any]) -> None:
    """Raises ValueError on every host when some host's `facts` (name -> JSON-able value,
    e.g. the config and the resolved data files) differ from process 0's, naming what
    differs and on which processes. Does nothing on one host."""
    if jax.process_count() == 1:
        return
    flat = _flat(facts)
    names = sorted(flat)
    summary = np.concatenate([_digest(json.dumps(names)),
                              _digest(json.dumps([flat[n] for n in names]))])
    every = np.asarray(multihost_utils.process_allgather(summary))  # [hosts, 8]
    if (every == every[0]).all():
        return
    if not (every[:, :4] == every[0, :4]).all():
        differ = [p for p in range(len(every)) if (every[p, :4] != every[0, :4]).any()]
        raise ValueError(f"hosts disagree on which settings exist: processes {differ} have "
                         f"other names than process 0 (a different version of the code?).")
    per_name = np.stack([_digest(flat[n]) for n in names])
    every = np.asarray(multihost_utils.process_allgather(per_name))  # [hosts, names, 4]
    differs = (every != every[:1]).any(axis=2)  # [hosts, names]
    wrong = [n for i, n in enumerate(names) if differs[:, i].any()]
    hosts = [p for p in range(len(every)) if differs[p].any()]
    shown = ", ".join(wrong[:5]) + (f" and {len(wrong) - 5} more" if len(wrong) > 5 else "")
    raise ValueError(f"hosts disagree on {shown}: processes {hosts} differ from process 0 "
                     f"(here, process {jax.process_index()}: {wrong[0]}={flat[wrong[0]]}); "
                     "run the same command with the same files on every host.")
