"""Scale-out benchmark: the catalogue, full evaluation at a million items, streaming
preprocessing and host devices, measured in one run.

    python experiments/bench_scale.py [--json FILE] [--sections catalogue,eval_1m,stream,devices]

Each section lives in ``experiments/scale/<section>.py`` (a ``run(args) -> dict`` and an
``add_arguments(parser)``); this script runs the sections asked for, prints every figure with
the backend and the device count, and writes them all to ``--json``.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

SECTIONS = ("catalogue", "eval_1m", "stream", "devices")


def _section(name: str):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    return importlib.import_module(f"scale.{name}")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help=f"comma-separated, of {', '.join(SECTIONS)}")
    for name in SECTIONS:
        _section(name).add_arguments(p)
    args = p.parse_args(argv)
    names = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        p.error(f"unknown section(s) {unknown}; choose from {list(SECTIONS)}")
    out = {}
    for name in names:
        print(f"== {name}", flush=True)
        out[name] = _section(name).run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
