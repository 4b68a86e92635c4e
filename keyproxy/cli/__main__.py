"""`python -m keyproxy.cli`: the `keyproxy` command."""

import sys

from keyproxy.cli import main

sys.exit(main())
