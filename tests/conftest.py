"""XLA flags for the test process, set before any test module imports jax (XLA reads them when
jax first starts its CPU backend); subprocesses the tests start inherit them.

* Eight host CPU devices for the mesh tests (``tests/test_mesh.py``). Every other test runs on
  the default device, device 0, as without the flag.
* A quicker CPU compiler for the default run (``-m 'not slow'``; test budget). Compiling
  dominates that run (about 70% of its time on 2 CPU cores) while the programs it runs are
  tiny. ``--xla_backend_optimization_level=0`` (no LLVM optimisation passes) and
  ``--xla_cpu_use_fusion_emitters=false`` (XLA's long-standing fusion emitters) change how XLA
  turns a program into CPU code, not what the program computes; with them the default suite took
  about half the time. The slow tests train for longer, where optimised code pays (about 25%
  faster with the default compiler), so a run that selects them keeps the default. Only where
  jax runs on the CPU alone (no GPU/TPU plugin, ``JAX_PLATFORMS`` unset or ``cpu``); a flag
  already in ``XLA_FLAGS`` is kept, so ``XLA_FLAGS="--xla_backend_optimization_level=3
  --xla_cpu_use_fusion_emitters=true"`` runs the default suite with the default compiler.
"""
import importlib.util
import os

DEVICES = {"--xla_force_host_platform_device_count": "8"}
QUICK_CPU_COMPILER = {"--xla_backend_optimization_level": "0",
                      "--xla_cpu_use_fusion_emitters": "false"}


def add_xla_flags(flags: dict) -> None:
    """Each flag not yet named in XLA_FLAGS appended to it."""
    given = os.environ.get("XLA_FLAGS", "")
    added = [f"{flag}={value}" for flag, value in flags.items() if flag not in given]
    if added:
        os.environ["XLA_FLAGS"] = " ".join([given, *added]).strip()


def cpu_only() -> bool:
    """No accelerator plugin installed and no platform but the CPU asked for."""
    if os.environ.get("JAX_PLATFORMS", "cpu").lower() not in ("", "cpu"):
        return False
    return not any(importlib.util.find_spec(name) for name in (
        "jax_plugins", "jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin",
        "jax_rocm7_plugin", "libtpu"))


add_xla_flags(DEVICES)


def pytest_configure(config):
    """Before collection imports jax: the quick compiler where slow tests are left out."""
    if "not slow" in (config.getoption("markexpr") or "") and cpu_only():
        add_xla_flags(QUICK_CPU_COMPILER)
