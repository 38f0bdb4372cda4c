"""The hardened unit and the udev rules, checked with systemd's own tools where this host has them.

systemd need not be running (these tests run in containers): `systemd-analyze security --offline`
and `systemd-analyze verify` read unit files. The unit checked is the one install-service writes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.service_install import agent_command, unit_text

REPO_ROOT = Path(__file__).resolve().parent.parent
UNIT = REPO_ROOT / "systemd" / "inventree-edge.service"
RULES = REPO_ROOT / "systemd" / "60-inventree-edge.rules"
MAX_EXPOSURE = 2.0
TOOL_TIMEOUT_S = 60


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd)")
    return subprocess.run(  # noqa: S603 - systemd's tool on our own files
        [tool, *args], capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False
    )


@pytest.fixture
def installed_unit(tmp_path: Path) -> Path:
    # ExecStart must name an executable file for `verify`: this test's own interpreter.
    command = agent_command(Path(sys.executable))
    path = tmp_path / "inventree-edge.service"
    path.write_text(unit_text(UNIT.read_text(), command))
    return path


def _settings(name: str) -> list[str]:
    prefix = f"{name}="
    return [
        line.removeprefix(prefix)
        for line in UNIT.read_text().splitlines()
        if line.startswith(prefix)
    ]


def test_the_exposure_score_is_at_most_two(installed_unit: Path) -> None:
    done = _analyze("security", "--offline=true", str(installed_unit))
    if "--offline" in done.stderr and "unrecognized" in done.stderr:
        pytest.skip("systemd-analyze is older than 252 (no --offline)")
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+) ", done.stdout)
    assert match, done.stdout + done.stderr
    assert float(match[1]) <= MAX_EXPOSURE, done.stdout


def test_systemd_accepts_every_line_of_the_unit(installed_unit: Path) -> None:
    done = _analyze("verify", str(installed_unit))
    # verify reports unknown or unparsable settings as warnings and still exits 0.
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == ""
    assert done.stdout.strip() == ""


def test_the_hardening_leaves_what_the_agent_needs() -> None:
    # Readiness and watchdog go through the notify socket (AF_UNIX).
    assert _settings("Type") == ["notify"]
    assert _settings("WatchdogSec") == ["60"]
    families = _settings("RestrictAddressFamilies")[0].split()
    # API and network printers; libusb's hot-plug and device list through udev's netlink socket.
    assert set(families) == {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
    assert _settings("DevicePolicy") == ["closed"]
    assert set(_settings("DeviceAllow")) == {
        f"char-{group} rw" for group in ("usb_device", "usbmisc", "ttyUSB", "ttyACM", "ttyAMA")
    }
    assert _settings("PrivateDevices") == []  # would hide /dev/bus/usb and the serial ports
    assert _settings("PrivateUsers") == []  # would turn lp and dialout into "nobody"
    assert _settings("StateDirectory") == ["inventree-edge"]
    assert _settings("ProtectSystem") == ["strict"]
    assert _settings("CapabilityBoundingSet") == [""]


def test_the_system_call_filter_allows_what_the_agent_calls() -> None:
    # setrlimit/prlimit64: agent/render_worker.py limits the render child's memory (RLIMIT_DATA).
    # ioctl: libusb talks to /dev/bus/usb through usbfs ioctls, pyserial sets the line with termios.
    # They must be in @system-service and in no group the unit takes away.
    filters = _settings("SystemCallFilter")
    allowed = [f for f in filters if not f.startswith("~")]
    denied = [group for f in filters if f.startswith("~") for group in f[1:].split()]
    assert allowed == ["@system-service"]
    listed = _analyze("syscall-filter")  # every group, so nested ones can be expanded
    assert listed.returncode == 0, listed.stderr
    groups = _syscall_groups(listed.stdout)
    for call in ("setrlimit", "prlimit64", "ioctl"):
        assert call in groups["@system-service"], call
        for group in denied:
            assert call not in groups[group], (call, group)


def _syscall_groups(listing: str) -> dict[str, set[str]]:
    """`systemd-analyze syscall-filter` output: each group with its calls, nested groups expanded."""
    direct: dict[str, set[str]] = {}
    current = ""
    for line in listing.splitlines():
        if line.startswith("@"):
            current = line.strip()
            direct[current] = set()
        elif line.strip() and not line.strip().startswith("#") and current:
            direct[current].add(line.strip())

    def expand(group: str, seen: frozenset[str] = frozenset()) -> set[str]:
        calls: set[str] = set()
        for entry in direct.get(group, set()):
            if entry.startswith("@") and entry not in seen:
                calls |= expand(entry, seen | {group})
            else:
                calls.add(entry)
        return calls

    return {group: expand(group) for group in direct}


# udev rules: systemd 252 has no `udevadm verify` (it came with 254); a parser of udev's syntax
# (udev(7)) checks each line, and `udevadm verify` runs too where it exists.

MATCH_KEYS = {"ACTION", "SUBSYSTEM", "KERNEL", "ENV", "ATTR", "ATTRS", "SUBSYSTEMS", "DRIVERS"}
ASSIGN_KEYS = {"MODE", "GROUP", "OWNER", "TAG", "ENV", "GOTO", "LABEL"}
TOKEN = re.compile(r'\s*([A-Z]+)(?:\{([^}]+)\})?(==|!=|\+=|-=|:=|=)"([^"]*)"\s*(?:,|$)')


def _rule_lines() -> list[str]:
    return [
        line
        for line in RULES.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def _tokens(line: str) -> list[tuple[str, str | None, str, str]]:
    tokens = []
    position = 0
    while position < len(line):
        match = TOKEN.match(line, position)
        assert match, f"cannot parse at column {position}: {line!r}"
        key, attribute, operator, value = match.groups()
        tokens.append((key, attribute, operator, value))
        position = match.end()
    return tokens


def test_every_udev_rule_is_well_formed() -> None:
    labels, gotos = set(), set()
    for line in _rule_lines():
        tokens = _tokens(line)
        assert tokens, line
        for key, attribute, operator, value in tokens:
            if operator in ("==", "!="):
                assert key in MATCH_KEYS, (key, line)
            else:
                assert key in ASSIGN_KEYS, (key, line)
                assert operator == "=", (key, operator, line)
            assert (attribute is not None) == (key in {"ENV", "ATTR", "ATTRS"}), line
            if key == "MODE":
                assert re.fullmatch(r"0[0-7]{3}", value), line
            if key == "LABEL":
                labels.add(value)
            if key == "GOTO":
                gotos.add(value)
    assert gotos <= labels


def test_udev_rules_give_lp_vendor_specific_label_printers_only() -> None:
    text = RULES.read_text()
    grants = [line for line in _rule_lines() if 'GROUP="lp"' in line]
    assert len(grants) == 1
    tokens = {(key, attribute): value for key, attribute, _op, value in _tokens(grants[0])}
    # Printer class (0701) is udev's own rule already; matching it here would duplicate it.
    assert tokens[("ENV", "ID_USB_INTERFACES")] == "*:ff????:*"
    assert tokens[("MODE", None)] == "0660"
    vendors = tokens[("ATTR", "idVendor")].split("|")
    assert all(re.fullmatch(r"[0-9a-f]{4}", vendor) for vendor in vendors)
    # Every vendor in the rule is named in the comment above it, and the other way round.
    comments = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    assert sorted(vendors) == sorted(set(re.findall(r"\b([0-9a-f]{4}) [A-Z]", comments)))
    assert {"04f9", "0922", "0a5f", "1203", "04b8", "1d90"} <= set(vendors)


def test_udevadm_verify_accepts_the_rules() -> None:
    udevadm = shutil.which("udevadm")
    if udevadm is None:
        pytest.skip("udevadm is not installed here (the parser test above checks the syntax)")
    done = subprocess.run(  # noqa: S603 - systemd's tool on our own file
        [udevadm, "verify", str(RULES)],
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
        check=False,
    )
    if "Unknown command" in done.stderr or "unknown" in done.stderr.lower():
        pytest.skip("udevadm has no verify command before systemd 254")
    assert done.returncode == 0, done.stdout + done.stderr
