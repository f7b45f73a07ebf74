"""``rtml features validate`` / ``list``: a repo checked as the services load it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rtml_cli.features import app
from rtml_features.repo import FEATURE_REPO_ENV, HANDBOOK_REPO

runner = CliRunner()
PAYMENTS_REPO = Path(__file__).resolve().parents[3] / "examples" / "feature_repos" / "payments"
WIDE = {"COLUMNS": "200"}


def test_validate_prints_each_schema_and_set_with_version_and_size() -> None:
    result = runner.invoke(app, ["validate", "--repo", str(PAYMENTS_REPO)], env=WIDE)
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[2].strip(): line for line in result.output.splitlines()
            if line.count("│") >= 5}
    assert "1f7ba0a614f7" in rows["payment"] and "11 fields" in rows["payment"]
    assert "24296aa44117" in rows["payments"] and "32 features" in rows["payments"]
    assert "9476c2716c3a" in rows["baseline"] and "from rtml_features.baseline" in rows["baseline"]
    assert "ok: 1 schema(s), 2 feature set(s)" in result.output


def test_validate_defaults_to_the_configured_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FEATURE_REPO_ENV, raising=False)
    result = runner.invoke(app, ["validate"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert str(HANDBOOK_REPO) in result.output
    assert "f1c4ba41ee34" in result.output and "18 features" in result.output
    result = runner.invoke(app, ["validate"], env={**WIDE, FEATURE_REPO_ENV: str(PAYMENTS_REPO)})
    assert "32 features" in result.output


def test_validate_prints_the_located_error_and_exits_2(tmp_path: Path) -> None:
    copy = Path(shutil.copytree(PAYMENTS_REPO, tmp_path / "payments"))
    features = copy / "features.py"
    features.write_text(features.read_text().replace('field="country"),', 'field="land"),', 1))
    result = runner.invoke(app, ["validate", "--repo", str(copy)], env=WIDE)
    assert result.exit_code == 2
    assert "error: features.py:" in result.output
    assert ": DefinitionError: card_distinct_countries_1day: field 'land' is not declared" \
        in result.output


def test_list_prints_a_set_in_input_order() -> None:
    result = runner.invoke(app, ["list", "--repo", str(PAYMENTS_REPO), "--set", "payments"],
                           env=WIDE)
    assert result.exit_code == 0, result.output
    names = [line.split("│")[2].strip() for line in result.output.splitlines()
             if line.count("│") == 4]
    assert len(names) == 32 and names[0] == "tx_amount" and names[-1] == "ip_amount_10min"
    assert "count_distinct(customer_id) per device over 1h" in result.output
    assert "time_since_first per card_device over its lifetime" in result.output
    assert "count per terminal over 1d, 7d label delay" in result.output


def test_list_refuses_an_unknown_set() -> None:
    result = runner.invoke(app, ["list", "--repo", str(HANDBOOK_REPO), "--set", "payments"])
    assert result.exit_code == 2
    assert "no feature set 'payments'" in result.output and "baseline, extended" in result.output


def test_features_is_mounted_on_the_rtml_command() -> None:
    from rtml_cli.app import app as rtml

    result = runner.invoke(rtml, ["features", "validate", "--repo", str(PAYMENTS_REPO)],
                           env=WIDE)
    assert result.exit_code == 0, result.output
    assert "payments" in result.output


def test_validate_refuses_what_a_service_would_refuse(tmp_path: Path) -> None:
    """A set redefining the handbook's ``baseline`` loads, but no service would take it."""
    repo = tmp_path / "mine"
    repo.mkdir()
    (repo / "mine.py").write_text(
        "import rtml_features.baseline as handbook\n"
        "from rtml_features.definitions import FeatureSet\n"
        "MINE = FeatureSet('baseline', handbook.BASELINE.features[:3])\n")
    result = runner.invoke(app, ["validate", "--repo", str(repo)], env=WIDE)
    assert result.exit_code == 2
    assert "error: mine.py: feature set 'baseline'" in result.output
    assert "would shadow the handbook's" in result.output
