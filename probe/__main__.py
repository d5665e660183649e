"""``python -m probe`` (also what ``torchrun -m probe run ...`` starts)."""

import sys

from probe.cli import main

sys.exit(main())
