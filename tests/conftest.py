"""Eight host CPU devices for the mesh tests (``tests/test_mesh.py``): XLA reads the flag when
jax first starts its CPU backend, so it is set here, before any test module imports jax. Every
other test runs on the default device, device 0, as without the flag."""
import os

_FLAG = "--xla_force_host_platform_device_count"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FLAG}=8".strip()
