"""Tokens never reach the server's logs, even when a browser puts one in a WebSocket URL."""

from __future__ import annotations

import logging

import pytest

from remotehands.server.logredact import install_log_redaction, redact_text


def test_query_tokens_and_credentials_are_masked() -> None:
    line = '127.0.0.1:5 - "WebSocket /v1/events?types=x&token=rhs_abcdefghijkl" [accepted]'
    assert redact_text(line) == (
        '127.0.0.1:5 - "WebSocket /v1/events?types=x&token=[redacted]" [accepted]'
    )
    assert redact_text("agent agt_0123456789abcdef linked") == "agent agt_[redacted] linked"
    assert redact_text("GET /v1/devices?status=online") == "GET /v1/devices?status=online"


def test_uvicorn_log_records_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    install_log_redaction()
    install_log_redaction()  # idempotent
    logger = logging.getLogger("uvicorn.error")
    assert len([f for f in logger.filters if type(f).__name__ == "_Redact"]) == 1
    with caplog.at_level(logging.INFO, logger="uvicorn.error"):
        logger.info('%s - "WebSocket %s" %s', "127.0.0.1:5", "/v1/events?token=rht_secretsecret",
                    "[accepted]")  # fmt: skip
    assert "rht_secret" not in caplog.text and "token=[redacted]" in caplog.text
