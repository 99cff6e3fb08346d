"""``python -m bot4.journal SEGMENT PATH``: run a segment's recorder (see :mod:`bot4.journal.recorder`)."""

from bot4.journal.recorder import main

raise SystemExit(main())
