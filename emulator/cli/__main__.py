"""``python -m emulator.cli``: the zpci-emu command without the console script."""
import sys

from emulator.cli import main

sys.exit(main())
