"""`python -m agent`: the same command as `inventree-edge`."""

from __future__ import annotations

import sys

try:
    from agent.cli import main
except KeyboardInterrupt:  # Ctrl-C while the interpreter is still importing
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(main())
