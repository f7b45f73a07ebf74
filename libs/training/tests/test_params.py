"""Parameter files: flat or per kind, every mistake refused with the file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtml_training.params import (
    RIVER_DEFAULTS,
    XGBOOST_DEFAULTS,
    ParamsError,
    load_params_file,
    xgboost_params,
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_flat_file_is_the_trained_kind_s_parameters(tmp_path: Path) -> None:
    loaded = load_params_file(write(tmp_path, "p.yaml", "max_depth: 4\nlearning_rate: 0.05\n"))
    assert loaded.for_kind("xgboost") == {"max_depth": 4, "learning_rate": 0.05}
    assert loaded.for_kind("river") == {}
    river = load_params_file(write(tmp_path, "r.yaml", "l2: 0.001\n"), default_kind="river")
    assert river.for_kind("river") == {"l2": 0.001}


def test_sections_per_kind_and_json(tmp_path: Path) -> None:
    loaded = load_params_file(write(tmp_path, "p.yaml", (
        "xgboost:\n  n_estimators: 300\nriver:\n  learning_rate: 0.005\n")))
    assert loaded.for_kind("xgboost") == {"n_estimators": 300}
    assert loaded.for_kind("river") == {"learning_rate": 0.005}
    as_json = load_params_file(write(tmp_path, "p.json", '{"xgboost": {"max_depth": 3}}'))
    assert as_json.for_kind("xgboost") == {"max_depth": 3}


def test_an_unknown_name_is_refused_with_file_line_and_the_accepted_names(
        tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", "xgboost:\n  max_dept: 4\n")
    with pytest.raises(ParamsError) as caught:
        load_params_file(path)
    message = str(caught.value)
    assert f"{path}:2" in message and "max_dept" in message and "max_depth" in message
    with pytest.raises(ParamsError, match="unknown river parameter"):
        load_params_file(write(tmp_path, "r.yaml", "river:\n  depth: 3\n"))


@pytest.mark.parametrize(("text", "expected"), [
    ("max_depth: 4\nmax_depth: 5\n", "duplicate key 'max_depth'"),
    ("max_depth: [1, 2]\n", "must be a number"),
    ("learning_rate: .nan\n", "must be finite"),
    ("- 1\n- 2\n", "a parameter file is a mapping"),
    ("max_depth: [\n", "line"),
])
def test_bad_content_is_refused_precisely(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ParamsError, match=expected.replace("[", r"\[")):
        load_params_file(write(tmp_path, "p.yaml", text))


def test_a_missing_file_names_itself(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="cannot read parameter file"):
        load_params_file(tmp_path / "nope.yaml")


def test_the_written_down_defaults_are_xgboost_s_own() -> None:
    """Pinning the defaults must not change the model: a booster fitted with every pinned
    value predicts bit for bit like one fitted with XGBoost's unset defaults (the XGBoost
    version caveat in docs/training.md: this test fails when a new XGBoost moves one)."""
    import numpy as np
    import xgboost as xgb

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2_000, 5))
    y = (x[:, 0] + 0.5 * x[:, 1] ** 2 + rng.normal(scale=0.5, size=2_000) > 1).astype(int)
    pinned = xgb.XGBClassifier(**xgboost_params()).fit(x, y).predict_proba(x)
    unset = xgb.XGBClassifier(random_state=0, n_jobs=2).fit(x, y).predict_proba(x)
    assert np.array_equal(pinned, unset)
    assert xgboost_params()["tree_method"] == "hist"
    assert XGBOOST_DEFAULTS["random_state"] == 0 and RIVER_DEFAULTS["learning_rate"] == 0.01


def test_the_parameter_file_in_the_training_docs_loads(tmp_path: Path) -> None:
    """docs/training.md's example parameter file is valid as printed."""
    docs = Path(__file__).resolve().parents[3] / "docs" / "training.md"
    text = docs.read_text()
    block = text.split("## Parameters", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    loaded = load_params_file(write(tmp_path, "example.yaml", block))
    assert loaded.for_kind("xgboost")["max_depth"] == 4
    assert loaded.for_kind("river") == {"learning_rate": 0.005}
