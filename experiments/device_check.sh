#!/usr/bin/env bash
# The GPU checks of the scale-out work, as one prepared run on a machine with an accelerator:
#
#   bash experiments/device_check.sh tests   # the default test suite at the default matmul
#                                            # precision, then at "highest"
#   bash experiments/device_check.sh bench   # bench_throughput (default and highest precision)
#   bash experiments/device_check.sh scale   # bench_scale
#
# Each part writes its logs and JSON files to $OUT (default: ./device_out) and fits in about ten
# minutes on a 16-core machine with one GPU (each command has its own time limit, so a part always
# returns what it has). The devices JAX sees are written first ($out/devices.txt).
#
# Python packages: the machine's python3 must have jax with its GPU plugin, flax, optax, chex,
# orbax-checkpoint, scipy, rich and pytest (with pytest-xdist). A package it lacks can travel as
# wheels in ./.whl (ignored by git; the device tool carries it when asked), downloaded on a machine
# with the registries, and is installed from there to /tmp/site below. The image seen in 2026-11
# lacked polars: polars 2.x is two wheels, 0.9 MB and 54 MB, within the 64 MiB a call carries:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --platform manylinux_2_17_x86_64 -d .whl polars polars-runtime-32
set -u
part=${1:-tests}
out=${OUT:-device_out}
mkdir -p "$out"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
# 16 test workers share one GPU: none may take the default 75% of its memory at start
export XLA_PYTHON_CLIENT_PREALLOCATE=false
python3 -c "import jax; print(jax.__version__, jax.devices())" > "$out/devices.txt" 2>&1
cat "$out/devices.txt"

run() {  # run NAME SECONDS COMMAND...: the command's output in $out/NAME.txt, its status last
  local name=$1 limit=$2
  shift 2
  timeout "$limit" "$@" > "$out/$name.txt" 2>&1
  echo "exit status $?" >> "$out/$name.txt"
  tail -3 "$out/$name.txt"
}

case $part in
  tests)
    run tests_default 280 python3 -m pytest -q -n 16 -p no:cacheprovider
    run tests_highest 280 env JAX_DEFAULT_MATMUL_PRECISION=highest \
      python3 -m pytest -q -n 16 -p no:cacheprovider
    ;;
  bench)
    run bench_default 300 python3 experiments/bench_throughput.py --json "$out/bench_default.json"
    run bench_highest 240 python3 experiments/bench_throughput.py --precision highest \
      --sections models,eval --json "$out/bench_highest.json"
    ;;
  scale)
    # one GPU: the devices section at 1 device (its other counts are host devices sharing cores)
    run bench_scale 540 python3 experiments/bench_scale.py --devices-counts 1 \
      --json "$out/scale.json"
    ;;
  *)
    echo "usage: bash experiments/device_check.sh tests|bench|scale" >&2
    exit 2
    ;;
esac
