"""Whether this process may use the data directory, checked before anything is opened.

The daemon and the CLI must act on the same files as the same user: a database written by root
(`sudo inventree-edge user create ...`) is one the service cannot open, and a database created
fresh by the CLI is one the service never reads. Every message names the path it is about.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

# SQLite's companions of the database file, written by whoever opens it.
_DATABASE_COMPANIONS = ("-wal", "-shm")


class DataDirError(Exception):
    """The data directory cannot be used by this process; the message says why and what to do."""


def check_data_dir(data_dir: Path, database: Path, secret: Path, *, create: bool) -> None:
    """Raise DataDirError unless this user may use (or, with `create`, make) the agent's files.

    Without `create` the database must exist already: the CLI adds to the service's data, it
    never starts a new one where the service would not look.
    """
    # Messages name absolute paths: "./data" says little when the working directory is unknown.
    data_dir, database, secret = data_dir.absolute(), database.absolute(), secret.absolute()
    if data_dir.exists() and not data_dir.is_dir():
        raise DataDirError(f"the data directory {data_dir} is not a directory")
    if not database.exists():
        if not create:
            raise DataDirError(
                f"no database at {database}: this is not where the agent keeps its data, or it "
                "has not started yet (start it once, or set [storage] path in the configuration "
                "the service uses and pass that file with --config)"
            )
        if not data_dir.exists():
            _check_can_create(data_dir)
    files = [data_dir, database, secret]
    files += [database.with_name(database.name + suffix) for suffix in _DATABASE_COMPANIONS]
    me = os.geteuid()
    for path in files:
        try:
            owner = path.stat().st_uid
        except FileNotFoundError:
            continue
        except OSError as err:
            raise DataDirError(f"cannot read {path}: {err.strerror or err}") from None
        if owner != me:
            give = f"give the data to '{_user_name(me)}' (chown -R {_user_name(me)}: {data_dir})"
            # The CLI is run by hand, often with sudo: running it as the owner is the usual fix.
            fix = (
                give
                if create
                else f"run the command as that user (sudo -u {_user_name(owner)} ...), or {give}"
            )
            raise DataDirError(
                f"{path} belongs to user '{_user_name(owner)}', not to '{_user_name(me)}' who "
                f"runs this: {fix}"
            )
        if not os.access(path, os.W_OK):
            raise DataDirError(
                f"{path} is not writable by user '{_user_name(me)}': "
                f"make it writable (chmod u+w {path})"
            )


def _check_can_create(data_dir: Path) -> None:
    """The nearest existing parent must let this user create the data directory in it."""
    parent = data_dir.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise DataDirError(
            f"cannot create the data directory {data_dir}: {parent} is not a directory"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DataDirError(
            f"cannot create the data directory {data_dir}: {parent} is not writable by user "
            f"'{_user_name(os.geteuid())}' (create {data_dir} for that user, or choose another "
            "[storage] path)"
        )


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
