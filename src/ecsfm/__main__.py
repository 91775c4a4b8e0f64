"""``python -m ecsfm`` runs the ``ecsfm`` command."""

from .cli import main

raise SystemExit(main())
