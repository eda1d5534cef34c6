"""``python -m avcl.cli`` (and ``torchrun -m avcl.cli``) runs the ``avcl`` command."""

import sys

from avcl.cli import main

sys.exit(main())
