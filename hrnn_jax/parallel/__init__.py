"""Beyond one device: a mesh (``make_mesh``), where each array lives on it (``layout``, ``plans``),
exact scores over a sharded catalogue (``ranking``) and many processes (``distributed``). See the
README's "Scaling out"."""
from hrnn_jax.parallel.layout import Split, fetch, jit_on, pad_host, put, put_part
from hrnn_jax.parallel.mesh import (
    AXES,
    MeshSpec,
    axis_size,
    describe,
    local_mesh,
    make_mesh,
    parse_mesh,
)
from hrnn_jax.parallel.plans import (
    batch_plan,
    lanes_plan,
    opt_state_plan,
    params_plan,
    seeds_plan,
)

__all__ = ["AXES", "MeshSpec", "Split", "axis_size", "batch_plan", "describe", "fetch",
           "jit_on", "lanes_plan", "local_mesh", "make_mesh", "opt_state_plan", "pad_host",
           "params_plan", "parse_mesh", "put", "put_part", "seeds_plan"]
