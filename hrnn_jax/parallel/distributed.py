"""Many processes: ``initialize`` once, before anything else touches JAX, in every process.

    hrnn-jax compare DATA --mesh data=8 --coordinator host0:1234 --num-processes 2 --process-id 0
    hrnn-jax compare DATA --mesh data=8 --coordinator host0:1234 --num-processes 2 --process-id 1

Every process runs the same program over the same global mesh (``jax.devices()`` lists every
process's devices); the arrays placed on it (``layout.put``) hold in each process only the slices
of its own devices, and the results gathered back (``layout.fetch``) are the same in every
process, so metrics are combined exactly. Item and user ids come from one encoding of the log,
the same in every process. Only process 0 prints and writes (:func:`is_main`). On CPU the
processes talk through gloo (``jax_cpu_collectives_implementation``).
"""
from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
    """``jax.distributed.initialize`` from the three flags, or, with none of them, from the
    environment JAX recognises (SLURM, Open MPI, Cloud TPU, ...). A partial set of flags is a
    ValueError naming what is missing."""
    given = {"--coordinator": coordinator, "--num-processes": num_processes,
             "--process-id": process_id}
    missing = [k for k, v in given.items() if v is None]
    if 0 < len(missing) < 3:
        raise ValueError(f"many processes: give {', '.join(missing)} as well (or none of the "
                         "three, to read them from the environment)")
    if num_processes is not None and not 0 <= process_id < num_processes:
        raise ValueError(f"--process-id must be in 0..{num_processes - 1}, got {process_id}")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator, num_processes, process_id)


def is_main() -> bool:
    """Whether this is process 0, the one that prints and writes."""
    return jax.process_index() == 0


def concat_over_processes(rows: np.ndarray) -> np.ndarray:
    """Every process's ``rows [n_i, ...]`` concatenated in process order, the same array in
    every process (``rows`` itself with one process): an all-gather of the lengths, then of the
    rows padded to the longest. Exact: nothing is summed."""
    rows = np.asarray(rows)
    if jax.process_count() == 1:
        return rows
    lengths = np.asarray(multihost_utils.process_allgather(np.array([len(rows)]))).ravel()
    block = np.zeros((int(lengths.max()),) + rows.shape[1:], rows.dtype)
    block[:len(rows)] = rows
    every = np.asarray(multihost_utils.process_allgather(block))
    return np.concatenate([every[p, :n] for p, n in enumerate(lengths)])
