"""The exit codes of the `inventree-edge` command, from sysexits.h where one fits.

Those that need a person to act are in the systemd unit's RestartPreventExitStatus, so that
systemd does not restart into the same failure every RestartSec (a test checks the unit).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2  # a wrong command line (argparse's own code)
EXIT_DATA = 65  # EX_DATAERR: the database or secret.key is lost, damaged or cannot be written
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: the port, or the data directory, is another daemon's
EXIT_DATA_DIR = 77  # EX_NOPERM: the data directory is another user's, read-only or not a directory
EXIT_CONFIG = 78  # EX_CONFIG: the configuration is wrong
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command stopped with Ctrl-C
