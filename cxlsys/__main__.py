"""``python -m cxlsys``: the same as the ``cxlsys`` command."""

import sys

from cxlsys.cli.main import main

sys.exit(main())
