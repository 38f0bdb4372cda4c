"""The `inventree-edge` command: run, check-config, user create, token create, install-service."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import importlib
import json
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from agent import __version__
from agent.exit_codes import EXIT_CONFIG, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE

if TYPE_CHECKING:
    from agent.central.store import LinkRecord
    from agent.config import Settings
    from agent.storage.database import Database


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script and of `python -m agent`."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        # Ctrl-C before the daemon's own signal handling is in place (imports, start-up).
        print("inventree-edge: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _main(argv: Sequence[str] | None) -> int:
    # The configuration (pydantic) and everything heavier load only here, after argument parsing,
    # so `--help` stays fast.
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    if args.command == "simulate":
        return _simulate(args)
    if args.command in _SERVICE_COMMANDS:
        return _service(args)
    with interrupts_deferred():
        for module in _MODULES.get(args.command, ()):
            importlib.import_module(module)
    if args.command == "doctor":  # reports a bad configuration instead of stopping at it
        return _doctor(args)
    from agent.config import ConfigError, load_settings, resolve_config_path

    config_path = resolve_config_path(args.config)
    try:
        settings = load_settings(config_path)
    except ConfigError as err:
        return _fail(f"configuration error: {err}", EXIT_CONFIG)
    if args.command == "run":
        return _run(settings, args, config_path)
    if args.command == "check-config":
        return _check_config(settings, config_path)
    if args.command == "discover":
        return _discover(settings, args)
    from agent.datadir import DataDirError, check_data_dir
    from agent.storage.errors import StoreError

    try:
        # The CLI adds to the data the service uses; it never starts a database of its own.
        check_data_dir(
            settings.storage.path, settings.database_path, settings.secret_path, create=False
        )
        if args.command == "user":
            return _user_create(settings, args)
        if args.command == "central":
            return _central_status(settings)
        return _token_create(settings, args)
    except DataDirError as err:
        where = f" (configuration: {config_path})" if config_path else " (no --config given)"
        return _fail(f"{err}{where}", EXIT_FAILURE)
    except StoreError as err:
        return _fail(str(err), EXIT_FAILURE)


def _fail(message: str, code: int) -> int:
    print(f"inventree-edge: {message}", file=sys.stderr)
    return code


def _run(settings: Settings, args: argparse.Namespace, config_path: Path | None) -> int:
    from agent.daemon import serve  # keep `check-config` and `--help` light
    from agent.log import configure_logging, stop_logging

    configure_logging(settings.log.level, settings.log.format)
    try:
        return asyncio.run(
            serve(settings, config_path=config_path, reset_database=args.reset_database)
        )
    finally:
        stop_logging()


def _discover(settings: Settings, args: argparse.Namespace) -> int:
    from agent.devices_cli import run_discover

    return run_discover(settings, as_json=args.json, out=sys.stdout)


def _doctor(args: argparse.Namespace) -> int:
    from agent.config import resolve_config_path
    from agent.doctor import run_doctor
    from agent.log import configure_logging, stop_logging

    # Drivers that fail to load are logged (stderr); the report is on stdout.
    configure_logging("warning", "auto")
    try:
        return run_doctor(resolve_config_path(args.config), sys.stdout)
    finally:
        stop_logging()


def _simulate(args: argparse.Namespace) -> int:
    from agent.log import configure_logging, stop_logging
    from drivers.sim.run import run_simulator  # only this command

    # The simulator prints one line per label on stdout; only problems go to the log.
    configure_logging("warning", "auto")
    try:
        asyncio.run(
            run_simulator(
                args.language, args.port, args.pty, args.fault, sys.stdout, args.host, args.save
            )
        )
    except KeyboardInterrupt:
        return 0
    except OSError as err:
        print(f"inventree-edge: cannot start the simulator: {err}", file=sys.stderr)
        return 1
    finally:
        stop_logging()
    return 0


_SERVICE_COMMANDS = ("install-service", "uninstall-service")


def _service(args: argparse.Namespace) -> int:
    from agent import service_cli

    return service_cli.run(args)


def _add_service(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from agent import service_cli

    service_cli.add_parsers(commands)


def _add_simulate(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`simulate LANGUAGE [options]`, one per family with a simulator: each help lists its faults."""
    from pathlib import Path  # keeps this block self-contained

    from drivers.family import builtin_families  # declarations, no simulator code
    from drivers.sim.faults import COMMON_FAULTS  # plain data

    simulated = [family for family in builtin_families().values() if family.simulator is not None]
    simulate = commands.add_parser(
        "simulate",
        help=f"run a printer simulator ({', '.join(f.language for f in simulated)}) to try"
        " printing without hardware",
        description="Run a printer simulator; `simulate LANGUAGE --help` lists its faults.",
    )
    languages = simulate.add_subparsers(dest="language", metavar="LANGUAGE", required=True)
    for family in simulated:
        faults = {**family.faults, **COMMON_FAULTS}
        width = max(map(len, faults))
        listing = "\n".join(f"  {name:<{width}}  {text}" for name, text in faults.items())
        parser = languages.add_parser(
            family.language,
            help=f"simulate {family.title}",
            description=f"Simulate {family.title} on TCP (default port 9100) or a pty.",
            epilog=f"faults of the {family.language} simulator (--fault):\n{listing}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        where = parser.add_mutually_exclusive_group()
        where.add_argument(
            "--port", type=int, default=None, help="TCP port on --host (default 9100)"
        )
        where.add_argument(
            "--pty", action="store_true", help="serve a pseudo-terminal (serial) instead"
        )
        parser.add_argument(
            "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
        )
        parser.add_argument(
            "--fault", choices=sorted(faults), metavar="FAULT", help="start in this fault (below)"
        )
        parser.add_argument(
            "--save",
            type=Path,
            metavar="DIR",
            help="also write each printed label to DIR as label-NNNN.png",
        )


def _check_config(settings: Settings, config_path: Path | None) -> int:
    """Refuse what `run` would refuse, `[[machines]]` settings included; print the result."""
    from agent.discovery import discover  # loads every driver
    from agent.log import configure_logging, stop_logging
    from agent.registry import ConfigMachineError, check_config_machines

    # Drivers that fail to load are logged (stderr); stdout is the configuration alone.
    configure_logging("warning", settings.log.format)
    try:
        check_config_machines(discover(), settings.machines)
    except ConfigMachineError as err:
        where = config_path if config_path is not None else "the environment"
        return _fail(f"configuration error: bad [[machines]] entry in {where}: {err}", EXIT_CONFIG)
    finally:
        stop_logging()
    from agent.config import masked_dump

    print(json.dumps(masked_dump(settings), indent=2))
    return 0


def _user_create(settings: Settings, args: argparse.Namespace) -> int:
    from agent.auth import create_user
    from agent.storage.auth import AuthStore
    from agent.storage.errors import DuplicateUsername

    database = settings.database_path.absolute()
    if not args.password_stdin and not sys.stdin.isatty():
        return _fail(
            "no terminal to ask for the password on: pass it on stdin with --password-stdin",
            EXIT_USAGE,
        )
    password = _read_password(args.password_stdin)
    if password is None:
        return _fail("the passwords do not match", EXIT_USAGE)
    if not password:
        return _fail("the password must not be empty", EXIT_USAGE)

    async def create() -> None:
        database = await _open_database(settings)
        try:
            await create_user(
                AuthStore(database),
                args.name,
                password,
                superuser=args.superuser,
                role=args.role,
                email=args.email,
            )
        finally:
            await database.close()

    try:
        asyncio.run(create())
    except DuplicateUsername:
        return _fail(f"user '{args.name}' already exists in {database}", EXIT_FAILURE)
    kind = " (superuser)" if args.superuser else f" (role {args.role})"
    print(f"created user '{args.name}'{kind} in {database}")
    return 0


def _token_create(settings: Settings, args: argparse.Namespace) -> int:
    from agent.auth import Authenticator, User
    from agent.storage.auth import AuthStore
    from agent.text_cleaning import clean_token_name

    async def create() -> str | None:
        database = await _open_database(settings)
        try:
            store = AuthStore(database)
            row = await store.get_user(username=args.user)
            if row is None:
                return None
            return await Authenticator(store, settings.secret_path).token_for(
                User.from_row(row), clean_token_name(args.name), reuse=False
            )
        finally:
            await database.close()

    key = asyncio.run(create())
    if key is None:
        return _fail(f"no user '{args.user}' in {settings.database_path.absolute()}", EXIT_FAILURE)
    print(key)
    return 0


def _central_status(settings: Settings) -> int:
    """The link's state as the daemon last recorded it, and the reports waiting in the outbox.

    Read from the database, not asked of the running daemon: an admin on the host needs no API
    token for it, and it also answers while the daemon is stopped or cannot start.
    """
    from agent.central.store import CentralStore

    async def read() -> tuple[LinkRecord | None, int]:
        database = await _open_database(settings)
        try:
            store = CentralStore(database)
            return await store.link(), await store.pending()
        finally:
            await database.close()

    record, pending = asyncio.run(read())
    central = settings.central
    if not central.enabled:
        print("central link: off (no central.url in the configuration)")
    elif record is None or record.url != central.url:
        print(f"central link: {central.url} as agent {central.name!r}")
        print("state: not started yet (the daemon has not run with this central.url)")
    else:
        print(f"central link: {record.url} as agent {record.agent!r}")
        running = "" if record.state != "stopped" else " (the daemon is not running)"
        print(f"state: {record.state} since {record.since}{running}")
        print(f"last contact: {record.last_contact or 'never'}")
        if record.last_error:
            print(f"last error: {record.last_error}")
    print(f"reports waiting in the outbox: {pending}")
    return 0


async def _open_database(settings: Settings) -> Database:
    from agent.storage.database import Database

    # The daemon's refusals too: an emptied database next to secret.key is not a new install.
    database = Database(settings.database_path, secret_path=settings.secret_path)
    await database.open()
    return database


def _read_password(from_stdin: bool) -> str | None:
    """The password (empty if none was given); None when the two typed on a terminal differ."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    try:
        first = getpass.getpass("Password: ")
        again = getpass.getpass("Password (again): ")
    except EOFError:
        return ""
    return first if again == first else None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inventree-edge",
        description="Edge agent for InvenTree label printers.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", metavar="PATH", help="TOML configuration file (default: $INVENTREE_EDGE_CONFIG)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser("run", parents=[common], help="run the daemon")
    run.add_argument(
        "--reset-database",
        action="store_true",
        help="start with an empty database if the database is missing, empty or damaged (a "
        "damaged one is moved aside); without it the agent refuses to start then",
    )
    commands.add_parser(
        "check-config", parents=[common], help="validate and print the effective configuration"
    )

    user = commands.add_parser("user", help="manage users").add_subparsers(
        dest="action", required=True
    )
    create = user.add_parser("create", parents=[common], help="create a user")
    create.add_argument("name")
    create.add_argument("--superuser", action="store_true", help="may do everything")
    create.add_argument(
        "--role",
        choices=("admin", "view", "none"),
        default="view",
        help="machine permissions of a normal user (default: view)",
    )
    create.add_argument("--email", default="")
    create.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )

    token = commands.add_parser("token", help="manage API tokens").add_subparsers(
        dest="action", required=True
    )
    token_create = token.add_parser("create", parents=[common], help="create a token and print it")
    token_create.add_argument("user")
    token_create.add_argument("--name", default="", help="a label for the token")

    central = commands.add_parser(
        "central", help="the link to a central InvenTree server"
    ).add_subparsers(dest="action", required=True)
    central.add_parser(
        "status",
        parents=[common],
        help="show the link's state as the daemon last recorded it, and the outbox",
    )

    discover = commands.add_parser(
        "discover",
        parents=[common],
        help="list attached printers (USB, serial, /dev/usb/lp*) with the CONNECTION to use",
    )
    discover.add_argument("--json", action="store_true", help="print JSON instead of text")
    commands.add_parser(
        "doctor",
        parents=[common],
        help="check the configuration, data, port, printers and clock; say what to fix",
    )

    _add_simulate(commands)
    _add_service(commands)
    return parser


# What each command loads before it runs (its modules import the rest).
_MODULES: dict[str, tuple[str, ...]] = {
    "run": ("agent.config", "agent.log", "agent.daemon"),
    "check-config": ("agent.config", "agent.log", "agent.discovery", "agent.registry"),
    "user": ("agent.config", "agent.datadir", "agent.auth", "agent.storage.auth"),
    "token": ("agent.config", "agent.datadir", "agent.auth", "agent.storage.auth"),
    "central": ("agent.config", "agent.datadir", "agent.central.store"),
    "discover": ("agent.config", "agent.devices_cli"),
    "doctor": ("agent.config", "agent.log", "agent.doctor"),
}


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C back while modules load, then act on it (KeyboardInterrupt) once they have.

    Python raises KeyboardInterrupt wherever the main thread is. Inside pydantic-core's compiled
    code (building a model's validators, initialising its C API) it comes out as a SchemaError or
    a Rust panic, with a traceback. Nothing has been opened while modules load, so waiting for
    the end of the imports loses nothing.
    """
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def console_main() -> None:
    """The console script: exit with `main`'s code."""
    sys.exit(main())
