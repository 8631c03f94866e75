"""`python -m arastory <command> ...`: the same as the `arastory` console script."""

import sys

from arastory.commands import main

sys.exit(main())
