"""ESC/POS receipt and label printers: driver, protocol, band layouts and simulator."""
