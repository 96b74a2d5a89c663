import sys

from mlaprof.cli.main import main

sys.exit(main())
