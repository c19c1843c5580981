"""``python -m libra ...`` is the ``libra`` command (``torchrun -m libra train ...`` needs a module)."""

import sys

from libra.cli import main

sys.exit(main())
