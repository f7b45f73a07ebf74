"""rtml_decision settings: its defaults, an override, canary weights and the admin key.

The contract every service keeps (README, entry point, shared settings) is
checked for all of them in ``tests/test_service_configs.py``, where the entry
point runs in a subprocess; here :func:`main` is called directly.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from rtml_common.service_config import EXIT_BAD_CONFIG
from rtml_decision.__main__ import main
from rtml_decision.config import Settings

# services/conftest.py: RTML_* variables of the shell must not change the defaults.
pytestmark = pytest.mark.usefixtures("clean_environment")

#: Defaults the README promises; changing one is a behaviour change.
EXPECTED_DEFAULTS = {
    "http_host": "127.0.0.1",
    "http_port": 8080,
    "model_name": "fraud-detector",
    "feature_set": "baseline",
    "rules_path": None,
    "admin_api_key": None,
    "request_timeout_ms": 50,
    "canary_weights": {},
    "fallback_rules_path": None,
    "idempotency_ttl_s": 86_400,
    "top_contributions": 5,
    "canary_key": "customer_id",
    "log_writer": True,
    "max_request_bytes": 16_384,
    "rules_max_bytes": 1_000_000,
    "rules_validation_timeout_s": 30.0,
    "backtest_timeout_s": 300.0,
    "max_future_skew_s": 300.0,
    "max_event_age_s": None,
    "rules_key_prefix": "rtml:decision-rules:",
    "rules_refresh_interval_s": 10.0,
}


def test_defaults_parse_to_the_documented_values() -> None:
    assert Settings().model_dump(include=set(EXPECTED_DEFAULTS)) == EXPECTED_DEFAULTS


def test_environment_overrides_a_default(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = {"champion": 95.0, "challenger": 5.0}
    assert EXPECTED_DEFAULTS["canary_weights"] != expected, "the override must change something"
    monkeypatch.setenv("RTML_DECISION_CANARY_WEIGHTS", '{"champion": 95, "challenger": 5}')
    assert Settings().canary_weights == expected


def test_the_feature_set_is_a_registered_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RTML_DECISION_FEATURE_SET", "extended")
    assert Settings().feature_set == "extended"
    monkeypatch.setenv("RTML_DECISION_FEATURE_SET", "richer")
    with pytest.raises(ValidationError, match="unknown feature set 'richer'; known: baseline, "
                                              "extended"):
        Settings()


def test_the_shared_rules_prefix_stays_out_of_the_idempotency_keys(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RTML_DECISION_RULES_KEY_PREFIX", "rtml:decision:rules:")
    with pytest.raises(ValidationError, match="must not start with 'rtml:decision:'"):
        Settings()
    monkeypatch.setenv("RTML_DECISION_RULES_KEY_PREFIX", "rtml:fraud-rules:")
    assert Settings().rules_key_prefix == "rtml:fraud-rules:"


@pytest.mark.parametrize(
    "weights",
    ['{"champion": -1, "challenger": 2}', '{"champion": 0, "challenger": 0}', '{" ": 1}'],
)
def test_canary_weights_must_describe_a_split(
    monkeypatch: pytest.MonkeyPatch, weights: str
) -> None:
    monkeypatch.setenv("RTML_DECISION_CANARY_WEIGHTS", weights)
    with pytest.raises(ValidationError, match="canary_weights"):
        Settings()


def test_malformed_canary_json_exits_2_naming_the_field(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RTML_DECISION_CANARY_WEIGHTS", "champion=95")
    assert main() == EXIT_BAD_CONFIG
    assert "canary_weights" in capsys.readouterr().err


def test_short_admin_key_is_refused_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RTML_DECISION_ADMIN_API_KEY", "hunter2-secret")
    assert main() == EXIT_BAD_CONFIG
    captured = capsys.readouterr()
    assert "RTML_DECISION_ADMIN_API_KEY" in captured.err
    assert "hunter2-secret" not in captured.err + captured.out


def test_admin_key_is_kept_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RTML_DECISION_ADMIN_API_KEY", "k" * 32)
    settings = Settings()
    assert settings.admin_api_key is not None
    assert settings.admin_api_key.get_secret_value() == "k" * 32
    assert "k" * 32 not in repr(settings)


def test_empty_value_means_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compose's ``${VAR:-}`` yields an empty string, which must not become a key."""
    monkeypatch.setenv("RTML_DECISION_ADMIN_API_KEY", "")
    assert Settings().admin_api_key is None
