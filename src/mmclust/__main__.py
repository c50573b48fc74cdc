"""``python -m mmclust`` is the ``mmclust`` command."""

import sys

from .cli import main

sys.exit(main())
