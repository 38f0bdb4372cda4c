"""The one table per meaning of true/false strings, and InvenTree's two rules for HTML in text."""

from __future__ import annotations

import pytest

from agent.booleans import drf_bool, setting_bool, str2bool
from agent.text_cleaning import TOKEN_NAME_MAX, clean_field, clean_token_name, has_html_tag


@pytest.mark.parametrize("text", ["t", "y", "yes", "true", "on", "1", " True ", "YES"])
def test_drf_true_strings(text: str) -> None:
    assert drf_bool(text) is True
    assert setting_bool(text) is True


@pytest.mark.parametrize("text", ["f", "n", "no", "false", "off", "0", " False ", "OFF"])
def test_drf_false_strings(text: str) -> None:
    assert drf_bool(text) is False
    assert setting_bool(text) is False


def test_ok_is_true_and_empty_is_false_only_for_settings() -> None:
    assert setting_bool("ok") is True
    assert str2bool("OK")
    assert setting_bool("") is False
    assert drf_bool("ok") is None
    assert drf_bool("") is None


@pytest.mark.parametrize("text", ["maybe", "2", "none", "null", "truthy"])
def test_other_strings_are_neither(text: str) -> None:
    assert drf_bool(text) is None
    assert setting_bool(text) is None
    assert not str2bool(text)


@pytest.mark.parametrize("text", ["<b>x</b>", "a </div>", "<!-- c -->", "<img src=x>", "< p >"])
def test_a_body_field_with_a_tag_is_refused(text: str) -> None:
    assert has_html_tag(text)


@pytest.mark.parametrize("text", ["1 < 2", "a <", "x > y", "<3", "<>"])
def test_a_body_field_with_angle_brackets_but_no_tag_is_kept(text: str) -> None:
    assert not has_html_tag(text)


def test_a_body_field_is_stripped_of_space_and_control_characters() -> None:
    assert clean_field("  a\x00b\x7fc\x9f  ") == "abc"


def test_a_token_name_loses_anything_bracketed_control_characters_and_spaces() -> None:
    assert clean_token_name("  my <b>bold</b> <3> token\x07 ") == "my-bold--token"
    assert clean_token_name("a b\u2003c") == "a-b-c"
    assert clean_token_name("a\tb") == "ab"  # a tab is a control character, dropped first
    assert len(clean_token_name("x" * 300)) == TOKEN_NAME_MAX
