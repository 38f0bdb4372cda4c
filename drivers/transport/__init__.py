"""Async transports to printers (TCP, serial, USB, device file) behind one `Transport` protocol."""

from __future__ import annotations

from drivers.transport.base import (
    CLOSE_TIMEOUT,
    READ_CHUNK,
    WRITE_TIMEOUT,
    BaseTransport,
    ConnectionUriError,
    Transport,
    TransportClosed,
    TransportError,
    TransportTimeout,
)
from drivers.transport.devfile import DeviceFileTransport
from drivers.transport.link import Link, LinkState, PrinterUnreachable
from drivers.transport.replies import discard_received, drain_input, read_exactly, read_until
from drivers.transport.serial import SerialTransport
from drivers.transport.tcp import TcpTransport
from drivers.transport.uri import (
    ConnectionTarget,
    FileTarget,
    SerialTarget,
    TcpTarget,
    UsbTarget,
    parse_connection,
)
from drivers.transport.usb import SerialPin, UsbTransport

__all__ = [
    "CLOSE_TIMEOUT",
    "READ_CHUNK",
    "WRITE_TIMEOUT",
    "BaseTransport",
    "ConnectionTarget",
    "ConnectionUriError",
    "DeviceFileTransport",
    "FileTarget",
    "Link",
    "LinkState",
    "PrinterUnreachable",
    "SerialPin",
    "SerialTarget",
    "SerialTransport",
    "TcpTarget",
    "TcpTransport",
    "Transport",
    "TransportClosed",
    "TransportError",
    "TransportTimeout",
    "UsbTarget",
    "UsbTransport",
    "create_transport",
    "discard_received",
    "drain_input",
    "link_for",
    "parse_connection",
    "read_exactly",
    "read_until",
]


def create_transport(connection: str | ConnectionTarget) -> Transport:
    """Return an unopened transport for a `CONNECTION` URI; `ConnectionUriError` if it is bad."""
    target = parse_connection(connection) if isinstance(connection, str) else connection
    if isinstance(target, TcpTarget):
        return TcpTransport(target)
    if isinstance(target, SerialTarget):
        return SerialTransport(target)
    if isinstance(target, UsbTarget):
        return UsbTransport(target)
    return DeviceFileTransport(target)


def link_for(connection: str, *, name: str) -> Link:
    """Return a `Link` for a `CONNECTION` URI, parsed now so a bad URI fails at machine init."""
    target = parse_connection(connection)
    if isinstance(target, UsbTarget) and target.serial is None:
        usb_target, pin = target, SerialPin()
        return Link(lambda: UsbTransport(usb_target, pin), name=name)
    return Link(lambda: create_transport(target), name=name)
