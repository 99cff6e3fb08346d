"""``python -m bot4`` is the ``bot4`` command."""

import sys

from bot4._cli.main import main

sys.exit(main())
