"""Key names: W3C codes, aliases, characters and combinations."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from remotehands.errors import ValidationError
from remotehands.protocol.keys import CODES, Key, parse_combo, parse_key, parse_keys


@pytest.mark.parametrize(
    ("name", "code"),
    [("ctrl", "ControlLeft"), ("CTRL", "ControlLeft"), ("enter", "Enter"), ("Return", "Enter"),
     ("esc", "Escape"), ("pgdn", "PageDown"), ("super", "MetaLeft"), ("altgr", "AltRight"),
     ("keya", "KeyA"), ("F12", "F12"), ("s", "KeyS"), ("S", "KeyS"), ("5", "Digit5"),
     ("/", "Slash"), (" ", "Space"), ("up", "ArrowUp")],
)  # fmt: skip
def test_names_and_aliases(name: str, code: str) -> None:
    assert parse_key(name) == Key(code=code)


def test_characters_and_char_dicts() -> None:
    assert parse_key("é") == Key(char="é")
    assert parse_key({"char": "s"}) == Key(char="s")
    assert Key(char="s").to_wire() == {"char": "s"} and Key(code="KeyS").to_wire() == "KeyS"
    assert str(Key(code="Enter")) == "Enter" and str(Key(char="x")) == "'x'"


@pytest.mark.parametrize(
    "bad", ["", "frobnicate", 42, None, {"char": "ab"}, {"char": "a", "x": 1}, {"code": "KeyA"}]
)
def test_unknown_keys_say_what_to_use(bad: object) -> None:
    with pytest.raises(ValidationError) as err:
        parse_key(bad)
    assert "key" in err.value.details


def test_combinations() -> None:
    assert parse_combo("ctrl+shift+t") == [Key(code="ControlLeft"), Key(code="ShiftLeft"),
                                           Key(code="KeyT")]  # fmt: skip
    assert parse_combo("+") == [Key(char="+")]
    assert parse_combo("ctrl++") == [Key(code="ControlLeft"), Key(char="+")]
    assert parse_keys(["ctrl", {"char": "s"}]) == [Key(code="ControlLeft"), Key(char="s")]
    assert parse_keys(["ctrl+alt", "Delete"]) == [Key(code="ControlLeft"), Key(code="AltLeft"),
                                                  Key(code="Delete")]  # fmt: skip
    assert parse_keys({"char": "é"}) == [Key(char="é")]
    bad: object
    for bad in ("", "ctrl++shift+", "ctrl+ +a", [], 3.5):
        with pytest.raises(ValidationError):
            parse_keys(bad)


@given(st.sampled_from(CODES))
def test_every_code_parses_to_itself_in_any_case(code: str) -> None:
    assert parse_key(code) == Key(code=code)
    assert parse_key(code.lower()) == Key(code=code)
    assert parse_key(code.upper()) == Key(code=code)


@given(st.lists(st.sampled_from(CODES), min_size=1, max_size=5))
def test_combos_of_codes_round_trip(codes: list[str]) -> None:
    assert parse_combo("+".join(codes)) == [Key(code=c) for c in codes]


@given(st.text(min_size=1, max_size=1))
def test_any_single_character_is_a_key(char: str) -> None:
    key = parse_key(char)
    assert key.code in CODES or key.char == char
