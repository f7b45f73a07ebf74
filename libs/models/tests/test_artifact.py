"""Artifacts round-trip exactly and refuse anything that isn't what was saved."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import numpy as np
import pytest

import rtml_models.aliases
import rtml_models.artifact
import rtml_models.river.model
import rtml_models.xgboost.model
from rtml_features.definitions import FeatureSet
from rtml_models import IntegrityError, ModelError, load_model, save_model
from rtml_models.artifact import MANIFEST_FILE, read_manifest
from rtml_models.river import RiverModel
from rtml_models.xgboost import XGBoostModel


@pytest.mark.parametrize("module", [rtml_models.aliases, rtml_models.artifact,
                                    rtml_models.river.model, rtml_models.xgboost.model])
def test_docstring_examples_run(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.attempted > 0 and result.failed == 0


def _save(model: XGBoostModel | RiverModel, path: Path, fs: FeatureSet) -> str:
    return save_model(model, path, feature_set=fs.name, feature_set_version=fs.version).digest


def test_xgboost_round_trip_scores_identically(xgb_model: XGBoostModel, rows: np.ndarray,
                                               feature_set: FeatureSet, tmp_path: Path) -> None:
    digest = _save(xgb_model, tmp_path, feature_set)
    loaded = load_model(tmp_path, expected_digest=digest)
    assert isinstance(loaded, XGBoostModel)
    assert loaded.feature_names == xgb_model.feature_names
    np.testing.assert_array_equal(loaded.predict(rows), xgb_model.predict(rows))
    assert loaded.predict_one(rows[0]) == pytest.approx(float(xgb_model.predict(rows[:1])[0]))
    manifest = read_manifest(tmp_path)
    assert manifest.feature_set == "tiny" and manifest.feature_set_version == feature_set.version
    assert set(manifest.files) == {"model.ubj"}


def test_river_round_trip_keeps_learning_state(river_model: RiverModel, rows: np.ndarray,
                                               feature_set: FeatureSet, tmp_path: Path) -> None:
    digest = _save(river_model, tmp_path, feature_set)
    loaded = load_model(tmp_path, expected_digest=digest)
    assert isinstance(loaded, RiverModel)
    assert loaded.updates == river_model.updates == len(rows)
    np.testing.assert_allclose(loaded.predict(rows), river_model.predict(rows))
    loaded.learn_one(rows[0], True)
    assert loaded.updates == river_model.updates + 1


def test_river_refuses_to_unpickle_without_a_pinned_digest(
        river_model: RiverModel, feature_set: FeatureSet, tmp_path: Path) -> None:
    _save(river_model, tmp_path, feature_set)
    with pytest.raises(IntegrityError, match="pass the digest"):
        load_model(tmp_path, expected_digest=None)


def test_a_changed_file_is_refused_before_loading(xgb_model: XGBoostModel,
                                                  feature_set: FeatureSet,
                                                  tmp_path: Path) -> None:
    digest = _save(xgb_model, tmp_path, feature_set)
    with (tmp_path / "model.ubj").open("ab") as stream:
        stream.write(b"\0")
    with pytest.raises(IntegrityError, match=r"model\.ubj: sha256"):
        load_model(tmp_path, expected_digest=digest)


def test_a_rewritten_manifest_does_not_match_the_pinned_digest(
        river_model: RiverModel, feature_set: FeatureSet, tmp_path: Path) -> None:
    digest = _save(river_model, tmp_path, feature_set)
    # An attacker swaps the pickle and rewrites the manifest's hash to match it.
    (tmp_path / "river.pkl").write_bytes(b"not the saved state")
    manifest = json.loads((tmp_path / MANIFEST_FILE).read_text())
    manifest["files"]["river.pkl"] = rtml_models.artifact.file_sha256(tmp_path / "river.pkl")
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(IntegrityError, match="differs from the recorded"):
        load_model(tmp_path, expected_digest=digest)


def test_missing_manifest_and_wrong_width_are_clear_errors(
        xgb_model: XGBoostModel, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not an rtml model artifact"):
        load_model(tmp_path, expected_digest=None)
    with pytest.raises(ModelError, match=r"expects rows of 3 features .* shape \(2, 2\)"):
        xgb_model.predict(np.zeros((2, 2)))


def test_unknown_flavor_is_refused(xgb_model: XGBoostModel, feature_set: FeatureSet,
                                   tmp_path: Path) -> None:
    _save(xgb_model, tmp_path, feature_set)
    manifest = json.loads((tmp_path / MANIFEST_FILE).read_text())
    manifest["flavor"] = "onnx"
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="unknown model flavor 'onnx'"):
        load_model(tmp_path, expected_digest=None)


def test_contributions_sum_to_the_margin(xgb_model: XGBoostModel, rows: np.ndarray) -> None:
    contributions = xgb_model.contributions(rows[:5])
    assert contributions.shape == (5, 4)  # 3 features + bias
    margin = np.log(xgb_model.predict(rows[:5]) / (1 - xgb_model.predict(rows[:5])))
    np.testing.assert_allclose(contributions.sum(axis=1), margin, rtol=1e-4, atol=1e-4)
