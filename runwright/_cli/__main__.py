"""``python -m runwright._cli``: the ``runwright`` command."""

from . import main

raise SystemExit(main())
