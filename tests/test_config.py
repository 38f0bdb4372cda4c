"""Configuration: defaults, the TOML file, environment overrides, and errors that say where."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from agent.config import (
    ConfigError,
    Settings,
    load_settings,
    masked_dump,
    resolve_config_path,
)
from tests.daemon_helpers import REPO_ROOT

EXAMPLE = REPO_ROOT / "config.example.toml"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No agent variables from the developer's shell."""
    for name in list(os.environ):
        if name.upper().startswith("INVENTREE_EDGE_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def error_of(path: Path | None) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    return str(info.value)


# defaults and the file


def test_defaults_without_a_file() -> None:
    settings = load_settings(None)
    assert settings.http.host == "127.0.0.1"
    assert settings.http.port == 8000
    assert settings.http.max_body_bytes == 16 * 1024 * 1024
    assert settings.storage.path == Path("data")
    assert settings.database_path == Path("data") / "inventree-edge.sqlite3"
    assert settings.log.level == "info"
    assert settings.log.format == "auto"
    assert settings.auth.admin_password.get_secret_value() == ""
    assert settings.instance.name == "InvenTree Edge"
    assert settings.machines == []


def test_values_from_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[http]\nhost = "0.0.0.0"\nport = 9000\n'
        '[storage]\npath = "/var/lib/inventree-edge"\n'
        '[log]\nlevel = "debug"\nformat = "json"\n'
        '[auth]\nadmin_user = "root"\nadmin_email = "root@example.com"\n'
        '[instance]\nname = "Workshop"\n',
    )
    settings = load_settings(path)
    assert settings.http.host == "0.0.0.0"  # noqa: S104 - a value read back
    assert settings.http.port == 9000
    assert settings.http.max_body_bytes == 16 * 1024 * 1024
    assert settings.storage.path == Path("/var/lib/inventree-edge")
    assert (settings.log.level, settings.log.format) == ("debug", "json")
    assert settings.auth.admin_user == "root"
    assert settings.auth.admin_email == "root@example.com"
    assert settings.instance.name == "Workshop"


def test_machines_entries_are_parsed(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[[machines]]\n"
        'name = "Desk"\n'
        'driver = "virtual"\n'
        "[machines.machine_settings]\n"
        'LOCATION = "Shelf"\n'
        "[machines.driver_settings]\n"
        "DPI = 203\n"
        "CUT = true\n"
        "\n"
        "[[machines]]\n"
        'name = "Stock room"\n'
        'machine_type = "label-printer"\n'
        'driver = "zpl"\n'
        "active = false\n",
    )
    first, second = load_settings(path).machines
    assert (first.name, first.machine_type, first.driver, first.active) == (
        "Desk",
        "label-printer",
        "virtual",
        True,
    )
    assert first.machine_settings == {"LOCATION": "Shelf"}
    assert first.driver_settings == {"DPI": 203, "CUT": True}
    assert (second.name, second.driver, second.active) == ("Stock room", "zpl", False)
    assert second.driver_settings == {}


def test_machine_entry_without_a_driver_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, '[[machines]]\nname = "Desk"\n')
    message = error_of(path)
    assert "'machines.0.driver'" in message
    assert str(path) in message


def test_the_example_file_is_valid_and_shows_the_defaults() -> None:
    example = load_settings(EXAMPLE)
    defaults = load_settings(None)
    sections = set(tomllib.loads(EXAMPLE.read_text())) - {"auth", "machines"}
    assert sections >= {"http", "storage", "log", "instance"}
    for section in sections:
        assert getattr(example, section) == getattr(defaults, section), section
    assert [m.name for m in example.machines] == ["Virtual printer"]


def test_the_example_file_shows_every_option() -> None:
    text = EXAMPLE.read_text()
    missing = [
        f"{section}.{key}"
        for section in Settings.model_fields
        if section != "machines"
        for key in getattr(load_settings(None), section).model_dump()
        if not re.search(rf"^\[{section}\]$", text, re.MULTILINE)
        or not re.search(rf"^#? ?{key} =", text, re.MULTILINE)
    ]
    assert missing == []


def test_the_example_admin_user_is_the_default() -> None:
    documented = tomllib.loads(EXAMPLE.read_text())["auth"]["admin_user"]
    assert load_settings(None).auth.admin_user == documented


# the environment


def test_environment_overrides_the_file_and_merges_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, '[http]\nhost = "0.0.0.0"\nport = 9000\n[log]\nlevel = "debug"\n')
    monkeypatch.setenv("INVENTREE_EDGE_HTTP__PORT", "9100")
    monkeypatch.setenv("INVENTREE_EDGE_AUTH__ADMIN_PASSWORD", "from-env")
    settings = load_settings(path)
    assert settings.http.port == 9100
    assert settings.http.host == "0.0.0.0"  # noqa: S104 - the file's other key in that section stays
    assert settings.log.level == "debug"
    assert settings.auth.admin_password.get_secret_value() == "from-env"


def test_environment_alone_configures_without_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVENTREE_EDGE_STORAGE__PATH", "/srv/edge")
    monkeypatch.setenv("INVENTREE_EDGE_LOG__FORMAT", "json")
    settings = load_settings(None)
    assert settings.storage.path == Path("/srv/edge")
    assert settings.log.format == "json"


def test_unknown_key_in_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INVENTREE_EDGE_HTTP__PORTT", "9000")
    assert error_of(None) == (
        "unknown key 'http.portt' in environment variable INVENTREE_EDGE_HTTP__PORTT"
    )


def test_misspelt_section_variable_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVENTREE_EDGE_HTTP_PORT", "9000")
    assert "INVENTREE_EDGE_HTTP_PORT" in error_of(None)


def test_config_file_variable_is_not_a_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "[http]\nport = 9000\n")
    monkeypatch.setenv("INVENTREE_EDGE_CONFIG", str(path))
    assert load_settings(resolve_config_path(None)).http.port == 9000


@pytest.mark.parametrize(
    ("name", "value", "key"),
    [
        ("INVENTREE_EDGE_HTTP__PORT", "70000", "http.port"),
        ("INVENTREE_EDGE_HTTP__PORT", "eighty", "http.port"),
        ("INVENTREE_EDGE_LOG__LEVEL", "loud", "log.level"),
    ],
)
def test_bad_value_in_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, key: str
) -> None:
    monkeypatch.setenv(name, value)
    assert error_of(None).startswith(f"invalid value for '{key}' in environment variable {name}: ")


# errors in the file


def test_unknown_keys_in_the_file_are_all_named(tmp_path: Path) -> None:
    path = write(tmp_path, "[http]\nportt = 9000\n[printers]\nx = 1\n")
    assert error_of(path) == (
        f"unknown key 'http.portt' in {path}; unknown key 'printers' in {path}"
    )


@pytest.mark.parametrize(
    ("text", "key", "why"),
    [
        ("[http]\nport = 70000\n", "http.port", "less than or equal to 65535"),
        ("[http]\nport = -1\n", "http.port", "greater than or equal to 0"),
        (
            '[log]\nlevel = "loud"\n',
            "log.level",
            "'debug', 'info', 'warning', 'error' or 'critical'",
        ),
        ('[log]\nformat = "xml"\n', "log.format", "'auto', 'console' or 'json'"),
        ("[http]\nmax_body_bytes = 10\n", "http.max_body_bytes", "greater than or equal to 1024"),
    ],
)
def test_bad_value_in_the_file_names_key_file_and_reason(
    tmp_path: Path, text: str, key: str, why: str
) -> None:
    path = write(tmp_path, text)
    message = error_of(path)
    assert message.startswith(f"invalid value for '{key}' in {path}: ")
    assert why in message


def test_toml_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[http]\nport = 9000\n[log\n")
    message = error_of(path)
    assert message.startswith(f"{path}: ")
    assert "line 3" in message


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    assert error_of(missing) == f"config file {missing} does not exist or is not a file"


def test_directory_instead_of_a_file_is_an_error(tmp_path: Path) -> None:
    assert "does not exist or is not a file" in error_of(tmp_path)


# where the file comes from, and what check-config shows


def test_config_path_from_option_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_config_path(None) is None
    monkeypatch.setenv("INVENTREE_EDGE_CONFIG", "/etc/inventree-edge/config.toml")
    assert resolve_config_path(None) == Path("/etc/inventree-edge/config.toml")
    assert resolve_config_path("/tmp/other.toml") == Path("/tmp/other.toml")  # noqa: S108


def test_masked_dump_hides_the_password_only() -> None:
    settings = Settings.model_validate(
        {"auth": {"admin_user": "root", "admin_password": "s3cret"}, "http": {"port": 9000}}
    )
    dumped = masked_dump(settings)
    assert dumped["auth"] == {"admin_user": "root", "admin_password": "***", "admin_email": ""}
    assert dumped["http"]["port"] == 9000
    assert dumped["storage"]["path"] == "data"
    assert "s3cret" not in repr(dumped)


# environment hints and letter case


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("INVENTREE_EDGE_HTTPS__PORT", "INVENTREE_EDGE_HTTP__PORT"),
        ("INVENTREE_EDGE_PORT", "INVENTREE_EDGE_HTTP__PORT"),
        ("INVENTREE_EDGE_HTTP_PORT", "INVENTREE_EDGE_HTTP__PORT"),
        ("INVENTREE_EDGE_LOG_LEVEL", "INVENTREE_EDGE_LOG__LEVEL"),
        ("INVENTREE_EDGE_STORAGE_PATH", "INVENTREE_EDGE_STORAGE__PATH"),
        ("INVENTREE_EDGE_AUTH_ADMIN_PASSWORD", "INVENTREE_EDGE_AUTH__ADMIN_PASSWORD"),
    ],
)
def test_misspelt_variable_hints_at_a_name_that_exists(
    monkeypatch: pytest.MonkeyPatch, name: str, hint: str
) -> None:
    monkeypatch.setenv(name, "1")
    message = error_of(None)
    assert f"unknown environment variable {name} " in message
    assert f"did you mean {hint}?" in message
    # The hint names a variable the agent accepts.
    section, key = hint.removeprefix("INVENTREE_EDGE_").lower().split("__")
    assert key in Settings.model_fields[section].annotation.model_fields  # type: ignore[union-attr]


def test_variable_with_nothing_close_gets_no_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVENTREE_EDGE_ZZZ", "1")
    message = error_of(None)
    assert "INVENTREE_EDGE_ZZZ" in message
    assert "did you mean" not in message


@pytest.mark.parametrize(
    ("level", "fmt"), [("DEBUG", "JSON"), ("Debug", "Json"), ("debug", "json")]
)
def test_log_level_and_format_accept_any_letter_case(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, level: str, fmt: str
) -> None:
    monkeypatch.setenv("INVENTREE_EDGE_LOG__LEVEL", level)
    monkeypatch.setenv("INVENTREE_EDGE_LOG__FORMAT", fmt)
    settings = load_settings(None)
    assert (settings.log.level, settings.log.format) == ("debug", "json")
    monkeypatch.delenv("INVENTREE_EDGE_LOG__LEVEL")
    monkeypatch.delenv("INVENTREE_EDGE_LOG__FORMAT")
    from_file = load_settings(write(tmp_path, '[log]\nlevel = "WARNING"\nformat = "Console"\n'))
    assert (from_file.log.level, from_file.log.format) == ("warning", "console")


def test_readme_configuration_table_lists_every_key_with_its_default() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    rows = {
        cells[1].strip("` "): cells[2].strip("` ")
        for line in readme.splitlines()
        if line.startswith("| `") and len(cells := line.split("|")) > 3
    }
    for section_name, section in Settings.model_fields.items():
        model = section.annotation
        if not isinstance(model, type) or not issubclass(model, BaseModel):
            continue
        for key, field in model.model_fields.items():
            assert f"{section_name}.{key}" in rows, f"README lacks `{section_name}.{key}`"
            default = field.default
            if isinstance(default, int | float) and not isinstance(default, bool):
                assert float(rows[f"{section_name}.{key}"]) == default, key
