"""`[central]`: from the file and the environment, secrets masked, the link off without a url."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from agent.config import ConfigError, load_settings, masked_dump


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("INVENTREE_EDGE_"):
            monkeypatch.delenv(name)


def test_without_a_url_the_link_is_off_and_named_after_the_host() -> None:
    central = load_settings(None).central

    assert not central.enabled
    assert central.name == socket.gethostname()
    assert (central.poll_interval, central.long_poll, central.report_interval) == (2.0, 0.0, 30.0)
    assert central.publish is None


def test_the_token_comes_from_the_environment_and_is_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[central]\nurl = "https://inventree.example.com/"\npublish = ["Zebra"]\n')
    monkeypatch.setenv("INVENTREE_EDGE_CENTRAL__TOKEN", "inv-secret")

    settings = load_settings(config)

    assert settings.central.url == "https://inventree.example.com"
    assert settings.central.token.get_secret_value() == "inv-secret"
    assert settings.central.publish == ["Zebra"]
    dumped = masked_dump(settings)["central"]
    assert (dumped["token"], dumped["password"]) == ("***", "")
    assert "inv-secret" not in repr(settings)


def test_a_url_without_credentials_names_the_keys_to_set(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[central]\nurl = "https://inventree.example.com"\n')

    with pytest.raises(ConfigError, match="INVENTREE_EDGE_CENTRAL__TOKEN"):
        load_settings(config)


def test_a_missing_ca_file_is_a_configuration_error(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[central]\nurl = "https://h"\ntoken = "t"\nca_file = "/nonexistent/ca.pem"\n'
    )

    with pytest.raises(ConfigError, match="ca_file"):
        load_settings(config)
