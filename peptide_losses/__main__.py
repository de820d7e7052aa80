"""``python -m peptide_losses``: the same as the ``peptide-losses`` command."""

import sys

from .cli import main

sys.exit(main())
