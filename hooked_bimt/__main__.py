"""``python -m hooked_bimt``: the ``hooked-bimt`` command line."""

import sys

from hooked_bimt.cli import main

sys.exit(main())
