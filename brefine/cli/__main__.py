"""``python -m brefine.cli``, the same as ``brefine``."""

import sys

from . import main

sys.exit(main())
