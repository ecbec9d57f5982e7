"""`python -m trainer train|evaluate|export ...` (see trainer.cli)."""

import sys

from trainer.cli import main

sys.exit(main())
