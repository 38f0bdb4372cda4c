"""The `inventree-edge` command: run, check-config, user create, token create."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sqlite3
import sys
from collections.abc import Sequence

from agent import __version__
from agent.config import ConfigError, Settings, load_settings, masked_dump, resolve_config_path
from agent.store import Store

EXIT_USAGE = 2
EXIT_CONFIG = 78


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script and of `python -m agent`."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    if args.command == "simulate":
        return _simulate(args)
    try:
        settings = load_settings(resolve_config_path(args.config))
    except ConfigError as err:
        print(f"inventree-edge: configuration error: {err}", file=sys.stderr)  # noqa: T201
        return EXIT_CONFIG
    handler = {
        "run": _run,
        "check-config": _check_config,
        "user": _user_create,
        "token": _token_create,
    }[args.command]
    return handler(settings, args)


def _run(settings: Settings, _args: argparse.Namespace) -> int:
    from agent.daemon import serve  # noqa: PLC0415 - keep `check-config` and `--help` light
    from agent.log import configure_logging, stop_logging  # noqa: PLC0415

    configure_logging(settings.log.level, settings.log.format)
    try:
        return asyncio.run(serve(settings))
    finally:
        stop_logging()


def _simulate(args: argparse.Namespace) -> int:
    from agent.log import configure_logging, stop_logging  # noqa: PLC0415
    from drivers.sim.run import run_simulator  # noqa: PLC0415 - only this command

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
        print(f"inventree-edge: cannot start the simulator: {err}", file=sys.stderr)  # noqa: T201
        return 1
    finally:
        stop_logging()
    return 0


def _add_simulate(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`simulate escpos|zpl [options]`: each language's help lists its own faults."""
    from pathlib import Path  # noqa: PLC0415 - keeps this block self-contained

    from drivers.sim.faults import COMMON_FAULTS, FAULTS_BY_LANGUAGE  # noqa: PLC0415 - plain data

    titles = {"escpos": "an ESC/POS receipt or label printer", "zpl": "a Zebra ZPL printer"}
    simulate = commands.add_parser(
        "simulate",
        help="run a printer simulator (ESC/POS or ZPL) to try printing without hardware",
        description="Run a printer simulator; `simulate LANGUAGE --help` lists its faults.",
    )
    languages = simulate.add_subparsers(dest="language", metavar="LANGUAGE", required=True)
    for language, own in FAULTS_BY_LANGUAGE.items():
        faults = {**own, **COMMON_FAULTS}
        width = max(map(len, faults))
        listing = "\n".join(f"  {name:<{width}}  {text}" for name, text in faults.items())
        parser = languages.add_parser(
            language,
            help=f"simulate {titles[language]}",
            description=f"Simulate {titles[language]} on TCP (default port 9100) or a pty.",
            epilog=f"faults of the {language} simulator (--fault):\n{listing}",
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


def _check_config(settings: Settings, _args: argparse.Namespace) -> int:
    print(json.dumps(masked_dump(settings), indent=2))  # noqa: T201
    return 0


def _user_create(settings: Settings, args: argparse.Namespace) -> int:
    from agent.auth import create_user  # noqa: PLC0415

    password = _read_password(args.password_stdin)
    if not password:
        print("inventree-edge: the password must not be empty", file=sys.stderr)  # noqa: T201
        return EXIT_USAGE

    async def create() -> None:
        store = await _open_store(settings)
        try:
            await create_user(
                store,
                args.name,
                password,
                superuser=args.superuser,
                role=args.role,
                email=args.email,
            )
        finally:
            await store.close()

    try:
        asyncio.run(create())
    except sqlite3.IntegrityError:
        print(f"inventree-edge: user '{args.name}' already exists", file=sys.stderr)  # noqa: T201
        return 1
    print(
        f"created user '{args.name}'"
        + (" (superuser)" if args.superuser else f" (role {args.role})")
    )  # noqa: T201
    return 0


def _token_create(settings: Settings, args: argparse.Namespace) -> int:
    from agent.api.users import clean_token_name  # noqa: PLC0415
    from agent.auth import Authenticator, User  # noqa: PLC0415

    async def create() -> str | None:
        store = await _open_store(settings)
        try:
            row = await store.get_user(username=args.user)
            if row is None:
                return None
            return await Authenticator(store, settings.secret_path).token_for(
                User.from_row(row), clean_token_name(args.name), reuse=False
            )
        finally:
            await store.close()

    key = asyncio.run(create())
    if key is None:
        print(f"inventree-edge: no user '{args.user}'", file=sys.stderr)  # noqa: T201
        return 1
    print(key)  # noqa: T201
    return 0


async def _open_store(settings: Settings) -> Store:

    store = Store(settings.database_path)
    await store.open()
    return store


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Password (again): ") != first:
        print("inventree-edge: the passwords do not match", file=sys.stderr)  # noqa: T201
        return ""
    return first


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
    commands.add_parser("run", parents=[common], help="run the daemon")
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

    _add_simulate(commands)
    return parser


def console_main() -> None:
    """The console script: exit with `main`'s code."""
    sys.exit(main())
