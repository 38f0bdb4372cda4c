"""The link to a central InvenTree server (docs/central-protocol.md): printers, jobs, results."""
