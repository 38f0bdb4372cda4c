"""The faults each simulator can be started in, with one line each for `simulate --help`.

Plain data with no imports, so the command line can list them without loading the simulators.
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
# Faults both printer families have.
COMMON_FAULTS: Mapping[str, str] = MappingProxyType(
    {**LINK_FAULTS, "offline": "answer nothing and print nothing (switched off)"}
)
ESCPOS_FAULTS: Mapping[str, str] = MappingProxyType(
    {
        "paper-out": "roll empty: offline, what arrives is dropped",
        "paper-near-end": "roll near its end: still prints",
        "cover-open": "cover open: offline, what arrives is dropped",
        "cutter-error": "cutter jammed: offline, what arrives is dropped",
        "feed-button": "FEED button held: offline while it feeds, then prints",
        "recovery-wait": "offline, waiting to go back online (DLE EOT 1 bit 5)",
        "presenter-waiting": "a Citizen presenter holds a label (DLE EOT 4 bit 6): still prints",
    }
)
ZPL_FAULTS: Mapping[str, str] = MappingProxyType(
    {
        "paper-out": "media out: formats dropped, ~HS not answered",
        "paper-near-end": "media near its end (~HQES warning): still prints",
        "head-open": "print head open: formats dropped, ~HS not answered",
        "ribbon-out": "ribbon out: formats dropped, ~HS not answered",
        "paused": "paused: formats wait in the buffer until ~PS or the fault is cleared",
        "label-waiting": "peel-off: a label waits to be taken (~HS); still prints",
    }
)
FAULTS_BY_LANGUAGE: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {"escpos": ESCPOS_FAULTS, "zpl": ZPL_FAULTS}
)
