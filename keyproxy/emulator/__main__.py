"""``python -m keyproxy.emulator``: run the loopback exchange emulator."""

import sys

from keyproxy.emulator.app import main

if __name__ == "__main__":
    sys.exit(main())
