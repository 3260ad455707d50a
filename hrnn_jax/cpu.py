"""CPU runtime setting: keep XLA's per-call scratch memory mapped between calls (glibc only).

XLA on CPU allocates one scratch buffer for every call of a compiled function (the train step's
intermediate arrays: about 10 MB for one seed of the benchmark's step, 76 MB for 8 vmapped seeds).
glibc's ``malloc`` serves a block above its mmap threshold (which adapts up to 32 MB; a worker
thread's arena holds at most 64 MB) with a fresh ``mmap`` and unmaps it on ``free``. A step with a
large scratch buffer then page-faults on every 4 KB page it touches, on every call: about 19,500
faults per call for 8 vmapped seeds of the benchmark's step, none for one seed, and that was about
a third of the 8-seed step's time on 2 cores (``experiments/bench_throughput.py`` prints both).

:func:`keep_freed_memory` makes such blocks come from the main heap and stay mapped once freed:

* glibc's ``mallopt``: an mmap threshold of 1 GiB and no trimming of the heap;
* ``jax_cpu_enable_async_dispatch = False``: compiled calls run on the calling thread, whose heap
  (the main one, for a script's main thread) has no 64 MB limit. The Python side then waits for
  each call instead of queuing the next one, which costs little when a call is a whole train step.

The process keeps its peak memory instead of returning it to the system, and its heap can hold a few
copies of the largest scratch buffer (fragmentation). It is opt-in, for scripts that train several
seeds in one ``jax.vmap``-ed step on CPU; it changes nothing on accelerators, whose memory XLA pools
itself.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import platform

import jax

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory(mmap_threshold: int = 1 << 30) -> bool:
    """Make large freed blocks stay mapped for the next call (see the module docstring).

    Returns True if glibc took the settings, False where the C library is not glibc (macOS, musl)
    and nothing was changed.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    # mallopt takes an int: 2**31 - 1 bytes is the largest trim threshold it can be given
    ok = (libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1
          and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1)
    if ok:
        jax.config.update("jax_cpu_enable_async_dispatch", False)
    return ok
