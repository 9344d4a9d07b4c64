"""``python -m hessbench ...`` (and ``torchrun ... -m hessbench ...``): the command line."""

import sys

from hessbench.cli import main

sys.exit(main())
