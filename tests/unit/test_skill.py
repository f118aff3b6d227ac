"""The OpenClaw skill: its metadata names what it needs, and every command it teaches exists."""

from __future__ import annotations

import re
from pathlib import Path

import yaml  # type: ignore[import-untyped]  # PyYAML (from uvicorn[standard]) has no types

from remotehands.cli.main import cli
from remotehands.protocol.actions import VERBS

SKILL = Path(__file__).parents[2] / "skills" / "remotehands" / "SKILL.md"


def _frontmatter() -> dict[str, object]:
    text = SKILL.read_text(encoding="utf-8")
    match = re.match(r"^---\n(.*?)\n---\n", text, re.S)
    assert match is not None, "SKILL.md starts with YAML frontmatter"
    data = yaml.safe_load(match.group(1))
    assert isinstance(data, dict)
    return data


def test_the_skill_declares_the_binary_and_the_environment_it_needs() -> None:
    meta = _frontmatter()
    assert meta["name"] == "remotehands" and SKILL.parent.name == "remotehands"
    assert isinstance(meta["description"], str) and len(meta["description"]) > 50
    openclaw = meta["metadata"]["openclaw"]  # type: ignore[index]
    assert openclaw["requires"]["bins"] == ["remotehands"]
    assert openclaw["requires"]["env"] == ["REMOTEHANDS_URL", "REMOTEHANDS_TOKEN"]


def test_every_command_the_skill_teaches_exists() -> None:
    text = SKILL.read_text(encoding="utf-8")
    taught = set(re.findall(r"^remotehands ([a-z-]+)", text, re.M))
    assert {"devices", "screenshot", "act", "ocr", "click-text", "wait-text"} <= taught
    known = set(cli.list_commands(None))  # type: ignore[arg-type]
    # the power commands come with the power actions (another branch): checked once they exist
    pending = {c for c in taught if c.startswith("power-") and c.replace("-", "_") not in VERBS}
    assert taught - pending <= known, taught - pending - known
    assert "--json" in text
