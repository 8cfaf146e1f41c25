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
        ("[ocpp]\ntls_ca = 'ca.pem'\n", "ocpp: tls_ca needs tls_cert"),
        ("[ocpp]\ntls_ca_key = 'ca.key'\n", "tls_ca_key needs tls_ca"),
        ("[api]\ntokens = ['short']\n", "api.tokens.0"),
        ("[storage]\nurl = 'mysql://x'\n", "storage.url: expected sqlite:///path"),
        ("[storage]\nurl = 'postgresql://x/db'\n", "webhooks.secret_key_file is required"),
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
    with pytest.raises(ConfigError, match=r"CSMS_OCPP__PORTT: \[ocpp\] has no setting 'portt'"):
        load_settings(path)


def test_list_settings_take_json_or_a_comma_separated_list_from_the_environment() -> None:
    env = {
        "CSMS_WEBHOOKS__RETRY_SCHEDULE": "5s, 30s,2m",
        "CSMS_API__TOKENS": '["0123456789abcdef", "fedcba9876543210"]',
    }
    settings = load_settings(None, environ=env)
    assert settings.webhooks.retry_schedule == [5.0, 30.0, 120.0]
    assert settings.api.tokens == ["0123456789abcdef", "fedcba9876543210"]
    single = load_settings(None, environ={"CSMS_API__TOKENS": "0123456789abcdef"})
    assert single.api.tokens == ["0123456789abcdef"]


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("CSMS_API__TOKENS", "abc", "CSMS_API__TOKENS (api.tokens.0): String should have at least"),
        (
            "CSMS_API__TOKENS",
            "[abc",
            "CSMS_API__TOKENS: expected a JSON array or a comma-separated",
        ),
        ("CSMS_WEBHOOKS__RETRY_SCHEDULE", "5s,soon", "CSMS_WEBHOOKS__RETRY_SCHEDULE (webhooks."),
        ("CSMS_API__PORT", "eighty", "CSMS_API__PORT (api.port): Input should be a valid integer"),
        (
            "CSMS_APIPORT",
            "8081",
            "CSMS_APIPORT: not a setting; variables are CSMS_<SECTION>__<KEY>",
        ),
        ("CSMS_NOPE__PORT", "8081", "CSMS_NOPE__PORT: not a setting"),
    ],
)
def test_a_bad_environment_override_names_the_variable(
    variable: str, value: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ={variable: value})
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_cli_reports_a_bad_environment_override_in_one_line(monkeypatch, capsys) -> None:
    from csms.cli import main

    monkeypatch.setenv("CSMS_API__TOKENS", "abc")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("csms: ") and "CSMS_API__TOKENS" in err


def test_the_same_port_for_the_api_and_ocpp_is_named() -> None:
    with pytest.raises(ConfigError, match=r"api\.port and ocpp\.port are both 9000"):
        load_settings(None, environ={"CSMS_API__PORT": "9000"})
    # Different hosts may share a port number.
    load_settings(None, environ={"CSMS_API__PORT": "9000", "CSMS_API__HOST": "127.0.0.2"})


def test_cli_refuses_a_bad_config_with_the_key_and_exit_code_2(tmp_path: Path, capsys) -> None:
    from csms.cli import main

    path = tmp_path / "bad.toml"
    path.write_text("[ocpp]\nheartbeat_interval = 0\n")
    assert main(["serve", "--config", str(path)]) == 2
    assert "ocpp.heartbeat_interval" in capsys.readouterr().err


def test_a_postgresql_url_with_a_key_file_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "pg.toml"
    path.write_text(
        "[storage]\nurl = 'postgresql://csms:pw@127.0.0.1:5432/csms'\n"
        f"[webhooks]\nsecret_key_file = '{tmp_path / 'key'}'\n"
    )
    settings = load_settings(path)
    assert settings.storage.is_postgres and settings.webhooks.secret_key_file
