"""The template family: a minimal, working example of a printer family to copy.

It speaks a made-up line protocol (`protocol.py`) that only its simulator understands, so it is
not a built-in: it is not in `drivers.BUILTIN_FAMILIES` and users never see it. The conformance
suite loads it as an extra driver (tests/conformance/matrix.py), and docs/drivers/writing-a-driver.md
walks through it. To start a new family, copy this folder, rename it, and list the package in
`drivers.BUILTIN_FAMILIES`.
"""

from __future__ import annotations

from types import MappingProxyType

from drivers.family import Family

FAMILY = Family(
    language="template",
    title="the template family's line printer (an example)",
    driver="drivers.template.driver:TemplateDriver",
    simulator="drivers.template.simulator:TemplateSimulator",
    faults=MappingProxyType(
        {
            "paper-low": "paper running low: still prints",
            "paper-out": "paper out: labels received are dropped",
        }
    ),
)
