"""The Openctrol protocol's shared pieces: the OFRA header byte for byte, key casing, and the
virtual-key table against every key name remotehands knows."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from remotehands.drivers.openctrol.client import (
    CODE_BY_VK,
    VK_BY_CODE,
    Folded,
    OpenctrolProtocolError,
    fold,
    ofra_header,
    parse_ofra,
)
from remotehands.protocol.keys import CODES


def test_the_header_is_the_references_16_little_endian_bytes() -> None:
    assert ofra_header(1920, 1080) == b"OFRA" + bytes.fromhex("800700003804000001000000")
    assert len(ofra_header(1, 1)) == 16


@given(st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1), st.binary(max_size=64))
def test_frames_parse_back(width: int, height: int, payload: bytes) -> None:
    assert parse_ofra(ofra_header(width, height) + payload) == (width, height, 1, payload)


def test_what_is_not_a_frame_is_refused() -> None:
    with pytest.raises(OpenctrolProtocolError, match="shorter"):
        parse_ofra(b"OFRA")
    with pytest.raises(OpenctrolProtocolError, match="not an OFRA frame"):
        parse_ofra(struct.pack("<4siii", b"JPEG", 1, 1, 1))


def test_keys_fold_across_casings() -> None:
    assert {fold(k) for k in ("ha_id", "haId", "HaId", "HA_ID")} == {"haid"}
    body = Folded({"MonitorId": "DISPLAY2", "Nested": [{"IsPrimary": True}]})
    assert body["monitor_id"] == "DISPLAY2" and body.get("monitorId") == "DISPLAY2"
    assert body["nested"][0]["is_primary"] is True
    assert "MONITOR_ID" in body and "monitor" not in body
    assert body.keys_as_sent == ("MonitorId", "Nested")


def test_every_key_but_power_has_a_virtual_key_and_back() -> None:
    assert set(CODES) - set(VK_BY_CODE) == {"Power", "IntlYen"}
    for code, vk in VK_BY_CODE.items():
        if code != "NumpadEnter":  # shares VK_RETURN with Enter
            assert CODE_BY_VK[vk] == code
    assert (VK_BY_CODE["KeyA"], VK_BY_CODE["Digit0"], VK_BY_CODE["F1"], VK_BY_CODE["Enter"]) == (
        0x41,
        0x30,
        0x70,
        0x0D,
    )
    assert (CODE_BY_VK[0x10], CODE_BY_VK[0x11], CODE_BY_VK[0x12]) == (
        "ShiftLeft",
        "ControlLeft",
        "AltLeft",
    )


def test_input_is_limited_to_a_thousand_messages_in_any_second() -> None:
    from remotehands.agent.dispatch import Dispatcher
    from remotehands.agent.faces.openctrol.desktop import InputTranslator, Monitors
    from remotehands.drivers.fake import FakeDriver

    now = [100.0]
    dispatcher = Dispatcher(FakeDriver(8, 8))
    limiter = InputTranslator(dispatcher, Monitors(dispatcher), clock=lambda: now[0])
    assert all(limiter.allow() for _ in range(1000))
    assert not limiter.allow()
    now[0] += 0.999
    assert not limiter.allow()  # the window slides: still the same second
    now[0] += 0.002
    assert all(limiter.allow() for _ in range(1000)) and not limiter.allow()
