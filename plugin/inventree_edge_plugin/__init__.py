"""InvenTree plugin for label printers behind an InvenTree Edge agent."""

__version__ = "0.1.0"

PLUGIN_SLUG = "inventree-edge"
DRIVER_SLUG = "edge-agent"
PROTOCOL_VERSION = 1
