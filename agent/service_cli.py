"""The `install-service` and `uninstall-service` commands (agent/service_install.py does the work)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agent.exit_codes import EXIT_FAILURE, EXIT_OK
from agent.service_install import (
    CONFIG_FILE,
    SECRETS_FILE,
    UNIT_NAME,
    Host,
    InstallError,
    Plan,
    agent_command,
    carry_out,
    plan_install,
    plan_uninstall,
)

COMMANDS = ("install-service", "uninstall-service")


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    install = commands.add_parser(
        "install-service",
        help="install and start the agent as a systemd service on this host (as root)",
        description="Create the inventree-edge user, /etc/inventree-edge/config.toml (if absent),"
        " a generated admin password (printed once), the data directory, the unit and the udev"
        " rules; then enable and start the service. Safe to run again: what is done is kept.",
    )
    install.add_argument(
        "--dry-run", action="store_true", help="print every file and command, change nothing"
    )
    uninstall = commands.add_parser(
        "uninstall-service",
        help="stop and remove the service; keeps the configuration and data unless --purge",
    )
    uninstall.add_argument(
        "--dry-run", action="store_true", help="print every file and command, change nothing"
    )
    uninstall.add_argument(
        "--purge",
        action="store_true",
        help="also delete the configuration, the admin password file, the data (database,"
        " jobs, users) and the inventree-edge user",
    )


def run(args: argparse.Namespace, host: Host | None = None) -> int:
    host = host if host is not None else Host()
    try:
        if args.command == "install-service":
            return _install(host, dry_run=args.dry_run)
        return _uninstall(host, dry_run=args.dry_run, purge=args.purge)
    except InstallError as err:
        print(f"inventree-edge: {err}", file=sys.stderr)
        return EXIT_FAILURE


def _check_host(host: Host, action: str, dry_run: bool) -> None:
    if not host.has_systemd():
        raise InstallError(
            f"systemd is not running on this host (no /run/systemd/system): {action} needs it;"
            " run the agent with `inventree-edge run` instead"
        )
    if not dry_run and not host.is_root:
        raise InstallError(
            f"{action} changes system files: run it with sudo (--dry-run shows what it would do)"
        )


def _install(host: Host, *, dry_run: bool) -> int:
    _check_host(host, "install-service", dry_run)
    plan = plan_install(host, agent_command(Path(sys.executable)))
    if dry_run:
        return _print_plan(plan)
    try:
        carry_out(plan, host, print)
    finally:
        # Also when a later step failed: the next run keeps the file and shows nothing.
        password = plan.admin_password
        if password is not None and password in (host.read(SECRETS_FILE) or ""):
            print(
                f"\nThe admin password (user 'admin'), shown this once; it is kept in"
                f" {SECRETS_FILE} (root only: `sudo cat {SECRETS_FILE}`):\n\n    {password}\n"
            )
    print(
        f"Installed. Add printers to {CONFIG_FILE} (then `sudo systemctl restart {UNIT_NAME}`);"
        f" logs: `journalctl -u {UNIT_NAME}`."
    )
    return EXIT_OK


def _uninstall(host: Host, *, dry_run: bool, purge: bool) -> int:
    _check_host(host, "uninstall-service", dry_run)
    plan = plan_uninstall(host, purge=purge)
    if dry_run:
        return _print_plan(plan)
    carry_out(plan, host, print)
    print("Uninstalled." if plan.steps else "Nothing to uninstall.")
    return EXIT_OK


def _print_plan(plan: Plan) -> int:
    print("Dry run: nothing is changed. The real run would:")
    for line in plan.describe():
        print(f"  {line}")
    return EXIT_OK
