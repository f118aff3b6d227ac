"""Log lines: valid JSON for any message (quotes, newlines, tracebacks), credentials masked."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from remotehands.cli.logs import configure_logging


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_parse_whatever_the_message_holds(restore_root: None) -> None:
    out = io.StringIO()
    configure_logging(logging.INFO, as_json=True, stream=out)
    log = logging.getLogger("remotehands.test")
    log.info('a "quoted" word and a\nnewline and a \\ backslash ✓')
    log.debug("not shown at info")
    try:
        raise ValueError('bad "value"\nsecond line')
    except ValueError:
        log.exception("it failed: %s", "details")
    log.warning("agent %s linked via %s", "agt_0123456789abcdef", "/v1/events?token=rht_secret99")
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    first, failure, secret = (json.loads(line) for line in lines)
    assert first["msg"] == 'a "quoted" word and a\nnewline and a \\ backslash ✓'
    assert first["level"] == "INFO" and first["logger"] == "remotehands.test" and first["at"]
    assert failure["level"] == "ERROR" and failure["msg"] == "it failed: details"
    assert "Traceback" in failure["exc_info"] and 'bad "value"' in failure["exc_info"]
    assert secret["msg"] == "agent agt_[redacted] linked via /v1/events?token=[redacted]"


def test_text_lines_and_one_handler_however_often_configured(restore_root: None) -> None:
    out = io.StringIO()
    configure_logging(logging.WARNING, as_json=False, stream=io.StringIO())
    configure_logging(logging.INFO, as_json=False, stream=out)
    logging.getLogger("remotehands.test").info("started on %s", "http://127.0.0.1:1")
    assert out.getvalue().rstrip().endswith("INFO started on http://127.0.0.1:1")
    assert len([h for h in logging.getLogger().handlers if getattr(h, "_remotehands", False)]) == 1
