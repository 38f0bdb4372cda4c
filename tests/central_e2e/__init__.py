"""End to end: InvenTree (303 and current) with the plugin, a real agent daemon, a ZPL simulator."""
