"""Server settings: defaults, environment, TOML file, precedence, bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from remotehands.errors import ConfigError
from remotehands.server.settings import ServerSettings, normalise_database_url, parse_listen


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.upper().startswith("REMOTEHANDS_"):
            monkeypatch.delenv(key)


def test_defaults() -> None:
    settings = ServerSettings.load()
    assert settings.data_dir == Path("data")
    assert settings.db_url == "sqlite+aiosqlite:///data/remotehands.db"
    assert settings.listen == "127.0.0.1:8080"
    assert settings.base_url == "http://127.0.0.1:8080"
    assert settings.ws_base_url == "ws://127.0.0.1:8080"
    assert settings.heartbeat_interval_s == 10.0
    assert settings.offline_after_missed == 3
    assert settings.offline_after_s == 30.0
    assert settings.session_ttl_s == 8 * 3600
    assert settings.enrollment_ttl_s == 1800
    assert settings.request_timeout_s == 30.0
    assert settings.bulk_concurrency == 64
    assert settings.login_rate_limit == 10


def test_derived_defaults_follow_data_dir_and_listen(tmp_path: Path) -> None:
    settings = ServerSettings.load(data_dir=tmp_path, listen="0.0.0.0:9000")
    assert settings.db_url == f"sqlite+aiosqlite:///{tmp_path}/remotehands.db"
    assert settings.public_url == "http://0.0.0.0:9000"


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMOTEHANDS_DATABASE_URL", "postgresql://u:p@db/fleet")
    monkeypatch.setenv("REMOTEHANDS_PUBLIC_URL", "https://fleet.example.com/")
    monkeypatch.setenv("REMOTEHANDS_SESSION_TTL_S", "60")
    monkeypatch.setenv("REMOTEHANDS_TOKEN", "unrelated")  # other parts' variables are ignored
    settings = ServerSettings.load()
    assert settings.db_url == "postgresql+asyncpg://u:p@db/fleet"
    assert settings.base_url == "https://fleet.example.com"
    assert settings.ws_base_url == "wss://fleet.example.com"
    assert settings.session_ttl_s == 60


def test_precedence_code_over_env_over_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "server.toml"
    config.write_text(
        '[server]\nlisten = "10.0.0.1:1"\ndata_dir = "/from/file"\nenrollment_ttl_s = 5\n'
    )
    monkeypatch.setenv("REMOTEHANDS_LISTEN", "10.0.0.2:2")
    settings = ServerSettings.load(config)
    assert settings.listen == "10.0.0.2:2"
    assert settings.data_dir == Path("/from/file")
    assert settings.enrollment_ttl_s == 5
    assert settings.db_url == "sqlite+aiosqlite:////from/file/remotehands.db"
    settings = ServerSettings.load(config, listen="10.0.0.3:3", data_dir=None)
    assert settings.listen == "10.0.0.3:3"
    assert settings.data_dir == Path("/from/file")  # None overrides are ignored


def test_top_level_toml(tmp_path: Path) -> None:
    config = tmp_path / "server.toml"
    config.write_text("bulk_concurrency = 8\n")
    assert ServerSettings.load(config).bulk_concurrency == 8


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"listen": "nope"}, "listen"),
        ({"listen": "host:99999"}, "listen"),
        ({"database_url": "mysql://x/y"}, "database_url"),
        ({"database_url": "postgresql+psycopg://x/y"}, "database_url"),
        ({"public_url": "fleet.example.com"}, "public_url"),
        ({"heartbeat_interval_s": 0}, "heartbeat_interval_s"),
        ({"login_rate_limit": "many"}, "login_rate_limit"),
    ],
)
def test_bad_values_name_the_setting(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ServerSettings.load(None, **overrides)


def test_bad_environment_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMOTEHANDS_BULK_CONCURRENCY", "lots")
    with pytest.raises(ConfigError, match="bulk_concurrency"):
        ServerSettings.load()


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        ServerSettings.load(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("listen = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        ServerSettings.load(broken)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('lisen = "127.0.0.1:1"\n')
    with pytest.raises(ConfigError, match="unknown settings lisen"):
        ServerSettings.load(unknown)


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_listen("[::1]:0") == ("::1", 0)
    assert parse_listen("localhost:1") == ("localhost", 1)
    for bad in ("8080", ":8080", "host:", "host:x"):
        with pytest.raises(ConfigError):
            parse_listen(bad)


def test_normalise_database_url() -> None:
    assert normalise_database_url("postgres://a/b") == "postgresql+asyncpg://a/b"
    assert normalise_database_url("postgresql+asyncpg://a/b") == "postgresql+asyncpg://a/b"
    assert normalise_database_url("sqlite:////x.db") == "sqlite+aiosqlite:////x.db"
    with pytest.raises(ConfigError, match="no scheme"):
        normalise_database_url("/x.db")
