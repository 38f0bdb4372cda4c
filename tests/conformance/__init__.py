"""The driver conformance kit: one end-to-end suite that every printer family in `matrix` passes."""
