"""keep_freed_memory: a jitted call with a large scratch buffer stops page-faulting on every
call."""
import json
import platform
import subprocess
import sys

import pytest

SCRIPT = """
import json, resource, statistics, sys
from hrnn_jax import cpu
tuned = cpu.keep_freed_memory() if sys.argv[1] == "1" else None
import jax, jax.numpy as jnp
f = jax.jit(lambda v: (jnp.outer(v, v) @ v).sum())  # a 61 MB scratch buffer (the outer product)
v = jnp.ones(4000, jnp.float32)
scratch = f.lower(v).compile().memory_analysis().temp_size_in_bytes
f(v).block_until_ready()
faults = []
for _ in range(20):
    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    f(v).block_until_ready()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)
faults = statistics.median(faults)  # the tuned heap still grows now and then (fragmentation)
print(json.dumps({"tuned": tuned, "scratch": scratch, "faults": faults}))
"""


def run(tuned: bool) -> dict:
    out = subprocess.run([sys.executable, "-c", SCRIPT, "1" if tuned else "0"], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_keep_freed_memory_stops_per_call_page_faults():
    default, tuned = run(False), run(True)
    assert tuned["tuned"] is True
    assert default["scratch"] > 48 * 2**20  # above glibc's largest adaptive mmap threshold
    pages = default["scratch"] / 4096
    assert default["faults"] > 0.5 * pages  # the default maps the scratch buffer afresh each call
    assert tuned["faults"] < 0.05 * pages  # ... the tuned heap keeps it
