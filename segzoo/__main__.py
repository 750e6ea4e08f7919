"""``python -m segzoo`` runs the command line."""

import sys

from segzoo.cli import main

sys.exit(main())
