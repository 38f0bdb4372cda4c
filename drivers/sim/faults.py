"""The faults every simulator can be started in, with one line each for `simulate --help`.

Plain data with no imports, so the command line can list them without loading the simulators.
Each family declares its own faults in its `FAMILY` (`drivers/<family>/__init__.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

# Faults of the link rather than of the printer: applied by the TCP and pty servers.
LINK_FAULTS: Mapping[str, str] = MappingProxyType(
    {
        "disconnect-mid-job": "drop the connection inside the first label (a pty goes deaf)",
        "slow-link": "take data in 256-byte chunks, 50 ms apart",
        "slow-replies": "send replies one byte every 100 ms",
        "refuse-second-connection": "close a TCP connection made while another is open",
    }
)
# Faults every printer family has.
COMMON_FAULTS: Mapping[str, str] = MappingProxyType(
    {**LINK_FAULTS, "offline": "answer nothing and print nothing (switched off)"}
)
