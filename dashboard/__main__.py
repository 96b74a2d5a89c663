"""``python -m dashboard [DIR]``: the same as ``mlaprof dash [DIR]``."""

import sys

from mlaprof.cli.main import main

sys.exit(main(["dash", *sys.argv[1:]]))
