"""Characters to keystrokes for the target's layout (en-US, en-GB, de-DE)."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from remotehands.agent.faces.tinypilot import KEY_CODES
from remotehands.drivers.tinypilot.layouts import LAYOUTS, Stroke, strokes, unsupported
from remotehands.errors import ValidationError


def test_german_layout_swaps_y_and_z_and_uses_altgr() -> None:
    assert strokes("zyZY", "de-DE") == [
        Stroke("KeyY"),
        Stroke("KeyZ"),
        Stroke("KeyY", shift=True),
        Stroke("KeyZ", shift=True),
    ]
    assert strokes("@€{[]}\\~|", "de-DE") == [
        Stroke(code, altgr=True)
        for code in ("KeyQ", "KeyE", "Digit7", "Digit8", "Digit9", "Digit0", "Minus",
                     "BracketRight", "IntlBackslash")
    ]  # fmt: skip
    assert strokes("äöüß#'-_<>", "de-DE") == [
        Stroke("Quote"), Stroke("Semicolon"), Stroke("BracketLeft"), Stroke("Minus"),
        Stroke("Backslash"), Stroke("Backslash", shift=True), Stroke("Slash"),
        Stroke("Slash", shift=True), Stroke("IntlBackslash"), Stroke("IntlBackslash", shift=True),
    ]  # fmt: skip
    assert strokes('"§&/()=?', "de-DE") == [Stroke(f"Digit{d}", shift=True) for d in "2367890"] + [
        Stroke("Minus", shift=True)
    ]


def test_british_and_american_layouts_differ_where_their_keyboards_do() -> None:
    assert strokes('@"#~\\|£', "en-GB") == [
        Stroke("Quote", shift=True), Stroke("Digit2", shift=True), Stroke("Backslash"),
        Stroke("Backslash", shift=True), Stroke("IntlBackslash"),
        Stroke("IntlBackslash", shift=True), Stroke("Digit3", shift=True),
    ]  # fmt: skip
    assert strokes('@"#~\\|', "en-US") == [
        Stroke("Digit2", shift=True), Stroke("Quote", shift=True), Stroke("Digit3", shift=True),
        Stroke("Backquote", shift=True), Stroke("Backslash"), Stroke("Backslash", shift=True),
    ]  # fmt: skip
    assert Stroke("KeyA", shift=True, altgr=True).keystroke() == {
        "code": "KeyA", "shiftLeft": True, "altRight": True,
    }  # fmt: skip


def test_unsupported_characters_are_named_once_each_and_nothing_is_typed() -> None:
    with pytest.raises(ValidationError) as err:
        strokes("é\u2013é£x", "en-US")
    assert err.value.details == "These characters are not supported: 'é', '\u2013', '£'"
    assert unsupported("£¬", "en-GB") == []
    assert strokes("a\r\nb", "en-US") == [Stroke("KeyA"), Stroke("Enter"), Stroke("KeyB")]
    with pytest.raises(ValidationError, match="unknown keyboard layout 'fr-FR'"):
        strokes("a", "fr-FR")


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_types_ascii_letters_digits_and_spaces(layout: str) -> None:
    text = string.ascii_letters + string.digits + " \t\n"
    assert len(strokes(text, layout)) == len(text)


@given(st.sampled_from(sorted(LAYOUTS)), st.text(min_size=1, max_size=40))
def test_every_stroke_is_a_key_tinypilot_knows(layout: str, text: str) -> None:
    known = "".join(c for c in text if c in LAYOUTS[layout])
    for stroke in strokes(known, layout):
        assert stroke.code in KEY_CODES
