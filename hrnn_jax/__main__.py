"""``python -m hrnn_jax``: the command-line interface (see ``hrnn_jax.cli``)."""
import sys

from hrnn_jax.cli import main

if __name__ == "__main__":
    sys.exit(main())
