"""Settings: the example file shows every setting; bad values and unknown keys name the key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from csms.config import ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent


def test_the_example_config_shows_every_setting_and_loads() -> None:
    example = tomllib.loads((ROOT / "config.example.toml").read_text())
    for section, model in Settings.model_fields.items():
        assert model.annotation is not None
        assert set(example[section]) == set(model.annotation.model_fields), section
    settings = load_settings(ROOT / "config.example.toml")
    assert settings.ocpp.port == 9000 and settings.api.port == 8080
    assert settings.webhooks.retry_schedule[:3] == [5.0, 30.0, 120.0]


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ("[ocpp]\nport = 'abc'\n", "ocpp.port"),
        ("[ocpp]\nprot = 9000\n", "ocpp.prot: unknown setting"),
        ("[ocpp]\nauthorization = 'maybe'\n", "ocpp.authorization"),
        ("[ocpp]\ntls_cert = 'x.pem'\n", "tls_key"),
        ("[api]\ntokens = ['short']\n", "api.tokens.0"),
        ("[storage]\nurl = 'postgres://x'\n", "storage"),
        ("[webhooks]\nretry_schedule = ['5s', 'soon']\n", "webhooks.retry_schedule.1"),
        ("[webhooks]\ndisable_after = '-1h'\n", "webhooks.disable_after"),
        ("[nonsense]\nx = 1\n", "nonsense: unknown setting"),
        ("[ocpp\n", "not valid TOML"),
    ],
)
def test_a_bad_config_names_the_key(tmp_path: Path, toml: str, named: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert named in str(caught.value)


def test_environment_overrides_single_keys(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[api]\nport = 8081\n[webhooks]\ntimeout = 7\n")
    monkeypatch.setenv("CSMS_API__PORT", "9999")
    monkeypatch.setenv("CSMS_OCPP__ALLOW_UNKNOWN_CHARGERS", "true")
    settings = load_settings(path)
    assert settings.api.port == 9999  # the environment wins over the file
    assert settings.ocpp.allow_unknown_chargers is True
    assert settings.webhooks.timeout == 7  # the rest of the file still applies
    monkeypatch.setenv("CSMS_OCPP__PORTT", "1")
    with pytest.raises(ConfigError, match=r"ocpp\.portt: unknown setting"):
        load_settings(path)


def test_cli_refuses_a_bad_config_with_the_key_and_exit_code_2(tmp_path: Path, capsys) -> None:
    from csms.cli import main

    path = tmp_path / "bad.toml"
    path.write_text("[ocpp]\nheartbeat_interval = 0\n")
    assert main(["serve", "--config", str(path)]) == 2
    assert "ocpp.heartbeat_interval" in capsys.readouterr().err
