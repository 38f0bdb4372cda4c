"""inventree-edge: an edge agent for InvenTree label printers."""

__version__ = "0.1.0"
