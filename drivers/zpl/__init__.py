"""Zebra ZPL label printers: driver, protocol, status decoder and simulator."""
