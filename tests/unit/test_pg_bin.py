"""The tests' PostgreSQL comes from whichever version is installed (the newest)."""

from __future__ import annotations

from pathlib import Path

from tests.pg import PG_BIN, find_pg_bin


def test_the_newest_installed_version_is_found(tmp_path: Path) -> None:
    for version in ("13", "9.6", "16", "notes"):
        (tmp_path / version / "bin").mkdir(parents=True)
        (tmp_path / version / "bin" / "initdb").touch()
    (tmp_path / "17" / "bin").mkdir(parents=True)  # a version without initdb does not count
    assert find_pg_bin(tmp_path) == tmp_path / "16" / "bin"
    assert find_pg_bin(tmp_path, override="/opt/pg/bin") == Path("/opt/pg/bin")
    assert find_pg_bin(tmp_path / "none") == tmp_path / "none" / "bin"


def test_this_machine_has_one() -> None:
    assert (PG_BIN / "initdb").exists(), f"no PostgreSQL in {PG_BIN}: run scripts/system-deps"
