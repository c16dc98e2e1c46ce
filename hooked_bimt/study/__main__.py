"""``python -m hooked_bimt.study --preset ... --out DIR``: the reproduce subcommand without the main CLI."""

import sys

from hooked_bimt.study.reproduce import main

sys.exit(main())
