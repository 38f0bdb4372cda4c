"""Parsing of `CONNECTION` setting URIs into typed connection targets."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from drivers.transport.base import ConnectionUriError

DEFAULT_TCP_PORT = 9100
FORMS = "tcp://HOST[:PORT], serial:///dev/ttyUSB0, usb://VID:PID[/SERIAL] or file:///dev/usb/lp0"

_PARITIES = {"n": "N", "none": "N", "e": "E", "even": "E", "o": "O", "odd": "O"}
_PARITIES |= {"m": "M", "mark": "M", "s": "S", "space": "S"}
# The URI's own flags, narrower than DRF's table in agent/booleans.py (drivers import no agent code).
_BOOLS = {"1": True, "true": True, "yes": True, "on": True}
_BOOLS |= {"0": False, "false": False, "no": False, "off": False}
_HEX_ID = re.compile(r"(?:0x)?([0-9a-f]{1,4})", re.IGNORECASE)
_HOST = re.compile(r"[A-Za-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class TcpTarget:
    """A raw TCP port on a network printer (port 9100 unless given)."""

    host: str
    port: int = DEFAULT_TCP_PORT

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class SerialTarget:
    """A serial port with its line settings (9600 8N1, no flow control unless given)."""

    device: str
    baudrate: int = 9600
    bytesize: int = 8
    parity: str = "N"
    stopbits: float = 1
    rtscts: bool = False
    xonxoff: bool = False
    dsrdtr: bool = False

    def __str__(self) -> str:
        query = f"baudrate={self.baudrate}"
        if (self.bytesize, self.parity, self.stopbits) != (8, "N", 1):
            query += f"&bytesize={self.bytesize}&parity={self.parity}&stopbits={self.stopbits:g}"
        for flag in ("rtscts", "xonxoff", "dsrdtr"):
            if getattr(self, flag):
                query += f"&{flag}=1"
        return f"serial://{quote(self.device)}?{query}"


@dataclass(frozen=True, slots=True)
class UsbTarget:
    """A USB printer by vendor/product id, optionally its serial number, interface and endpoints."""

    vid: int
    pid: int
    serial: str | None = None
    interface: int | None = None
    out_ep: int | None = None
    in_ep: int | None = None

    def __str__(self) -> str:
        tail = f"/{quote(self.serial)}" if self.serial else ""
        return f"usb://{self.vid:04x}:{self.pid:04x}{tail}"


@dataclass(frozen=True, slots=True)
class FileTarget:
    """A device file such as `/dev/usb/lp0` (the kernel's usblp driver)."""

    path: str

    def __str__(self) -> str:
        return f"file://{quote(self.path)}"


ConnectionTarget = TcpTarget | SerialTarget | UsbTarget | FileTarget


def parse_connection(uri: str) -> ConnectionTarget:
    """Parse a `CONNECTION` URI; raise `ConnectionUriError` with a user-readable reason."""
    text = uri.strip()
    if not text:
        raise ConnectionUriError(f"no connection given; use {FORMS}")
    if "://" not in text:
        raise ConnectionUriError(f"connection '{text}' has no scheme; use {FORMS}")
    try:
        parts = urlsplit(text)
    except ValueError as err:
        raise ConnectionUriError(f"connection '{text}' is not a valid URI: {err}") from err
    if parts.fragment:
        raise ConnectionUriError(f"connection '{text}': unexpected '#{parts.fragment}'")
    options = _query(text, parts.query)
    scheme = parts.scheme.lower()
    if scheme == "tcp":
        return _tcp(text, parts.netloc, parts.path, options)
    if scheme == "serial":
        return _serial(text, parts.netloc, parts.path, options)
    if scheme == "usb":
        return _usb(text, parts.netloc, parts.path, options)
    if scheme == "file":
        return _file(text, parts.netloc, parts.path, options)
    raise ConnectionUriError(f"connection '{text}': unknown scheme '{parts.scheme}'; use {FORMS}")


def _query(text: str, query: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as err:
        raise ConnectionUriError(f"connection '{text}': cannot read options '{query}'") from err
    options: dict[str, str] = {}
    for key, value in pairs:
        key = key.lower()
        if key in options:
            raise ConnectionUriError(f"connection '{text}': option '{key}' is given twice")
        options[key] = value
    return options


def _reject_unknown(text: str, options: dict[str, str], known: tuple[str, ...]) -> None:
    unknown = sorted(set(options) - set(known))
    if unknown:
        allowed = ", ".join(known) if known else "none"
        raise ConnectionUriError(
            f"connection '{text}': unknown option '{unknown[0]}' (allowed: {allowed})"
        )


def _tcp(text: str, netloc: str, path: str, options: dict[str, str]) -> TcpTarget:
    _reject_unknown(text, options, ())
    if path not in ("", "/"):
        raise ConnectionUriError(f"connection '{text}': a tcp connection has no path; use {FORMS}")
    if not netloc:
        raise ConnectionUriError(f"connection '{text}' names no printer; use tcp://HOST[:PORT]")
    if netloc.startswith("["):
        host, bracket, rest = netloc[1:].partition("]")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            bracket = ""
        if not bracket or (rest and not rest.startswith(":")):
            raise ConnectionUriError(f"connection '{text}': '{netloc}' is not an IPv6 address")
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text_or_empty = netloc.partition(":")
        port_text = port_text_or_empty if colon else None
        if not _HOST.fullmatch(host) or ":" in port_text_or_empty:
            raise ConnectionUriError(
                f"connection '{text}': '{netloc}' is not a host name or address "
                "(write IPv6 addresses in brackets: tcp://[fe80::1]:9100)"
            )
    if port_text is None:
        return TcpTarget(host=host)
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConnectionUriError(f"connection '{text}': port must be 1-65535, not '{port_text}'")
    return TcpTarget(host=host, port=int(port_text))


def _serial(text: str, netloc: str, path: str, options: dict[str, str]) -> SerialTarget:
    device = _device_path(text, netloc, path, "serial:///dev/ttyUSB0")
    _reject_unknown(
        text, options, ("baudrate", "bytesize", "parity", "stopbits", "rtscts", "xonxoff", "dsrdtr")
    )
    baudrate = _int_option(text, options, "baudrate", 9600, range(50, 4_000_001))
    bytesize = _int_option(text, options, "bytesize", 8, range(5, 9))
    parity_text = options.get("parity", "N").lower()
    if parity_text not in _PARITIES:
        raise ConnectionUriError(
            f"connection '{text}': parity must be N, E, O, M or S, not '{options['parity']}'"
        )
    stopbits_text = options.get("stopbits", "1")
    if stopbits_text not in ("1", "1.5", "2"):
        raise ConnectionUriError(
            f"connection '{text}': stopbits must be 1, 1.5 or 2, not '{stopbits_text}'"
        )
    return SerialTarget(
        device=device,
        baudrate=baudrate,
        bytesize=bytesize,
        parity=_PARITIES[parity_text],
        stopbits=float(stopbits_text) if stopbits_text == "1.5" else int(stopbits_text),
        rtscts=_bool_option(text, options, "rtscts"),
        xonxoff=_bool_option(text, options, "xonxoff"),
        dsrdtr=_bool_option(text, options, "dsrdtr"),
    )


def _usb(text: str, netloc: str, path: str, options: dict[str, str]) -> UsbTarget:
    _reject_unknown(text, options, ("interface", "out_ep", "in_ep"))
    vid_text, sep, pid_text = netloc.partition(":")
    vid_match, pid_match = _HEX_ID.fullmatch(vid_text), _HEX_ID.fullmatch(pid_text)
    if not sep or vid_match is None or pid_match is None:
        raise ConnectionUriError(
            f"connection '{text}': expected usb://VID:PID with hex ids as `lsusb` shows them, "
            "for example usb://04b8:0e15"
        )
    raw_serial = path.strip("/")
    if "/" in raw_serial:
        raise ConnectionUriError(f"connection '{text}': expected usb://VID:PID/SERIAL")
    serial = unquote(raw_serial) or None
    out_ep = _endpoint_option(text, options, "out_ep", inbound=False)
    in_ep = _endpoint_option(text, options, "in_ep", inbound=True)
    interface = (
        _int_option(text, options, "interface", 0, range(256)) if "interface" in options else None
    )
    return UsbTarget(
        vid=int(vid_match.group(1), 16),
        pid=int(pid_match.group(1), 16),
        serial=serial,
        interface=interface,
        out_ep=out_ep,
        in_ep=in_ep,
    )


def _file(text: str, netloc: str, path: str, options: dict[str, str]) -> FileTarget:
    _reject_unknown(text, options, ())
    if netloc.lower() == "localhost":
        netloc = ""
    return FileTarget(path=_device_path(text, netloc, path, "file:///dev/usb/lp0"))


def _device_path(text: str, netloc: str, path: str, example: str) -> str:
    if netloc or not path.startswith("/") or path == "/":
        raise ConnectionUriError(
            f"connection '{text}': expected an absolute device path after three slashes, "
            f"for example {example}"
        )
    return unquote(path)


def _int_option(
    text: str, options: dict[str, str], key: str, default: int, allowed: range, base: int = 10
) -> int:
    raw = options.get(key)
    if raw is None:
        return default
    try:
        value = int(raw, base)
    except ValueError:
        value = -1
    if value not in allowed:
        raise ConnectionUriError(
            f"connection '{text}': {key} must be a number from {allowed.start} to "
            f"{allowed.stop - 1}, not '{raw}'"
        )
    return value


def _bool_option(text: str, options: dict[str, str], key: str) -> bool:
    raw = options.get(key, "0")
    value = _BOOLS.get(raw.lower())
    if value is None:
        raise ConnectionUriError(f"connection '{text}': {key} must be 0 or 1, not '{raw}'")
    return value


def _endpoint_option(text: str, options: dict[str, str], key: str, *, inbound: bool) -> int | None:
    if key not in options:
        return None
    address = _int_option(text, options, key, 0, range(256), base=0)
    # Bit 7 of an endpoint address is its direction: set for IN (device to host), clear for OUT.
    if bool(address & 0x80) != inbound or address & 0x70:
        example = "0x81" if inbound else "0x01"
        raise ConnectionUriError(
            f"connection '{text}': {key}={options[key]} is not an {'IN' if inbound else 'OUT'} "
            f"endpoint address (like {example}; `lsusb -v` lists them)"
        )
    return address
