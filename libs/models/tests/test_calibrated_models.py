"""A calibrated model serves calibrated scores on every path, and its artifact keeps the
map under the manifest's hashes."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from rtml_features.definitions import FeatureSet
from rtml_models import (
    Calibration,
    IntegrityError,
    ModelError,
    fit_isotonic,
    fit_platt,
    load_model,
    save_model,
)
from rtml_models.artifact import MANIFEST_FILE, file_sha256, read_manifest
from rtml_models.calibration import CALIBRATION_FILE
from rtml_models.river import RiverModel
from rtml_models.xgboost import XGBoostModel

NAMES = [f"f{i}" for i in range(6)]


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    rows = rng.random((4000, 6)) * 10
    rows[rng.random(rows.shape) < 0.05] = np.nan
    labels = (np.nan_to_num(rows[:, 1]) + rng.normal(0, 2, len(rows)) > 7).astype(float)
    return rows, labels


@pytest.fixture(scope="module")
def booster(data: tuple[np.ndarray, np.ndarray]) -> xgb.Booster:
    rows, labels = data
    # scale_pos_weight: scores overstate fraud, as with a reweighted training set
    return xgb.train({"objective": "binary:logistic", "max_depth": 4, "nthread": 1,
                      "scale_pos_weight": 5.0},
                     xgb.DMatrix(rows[:3000], label=labels[:3000], feature_names=NAMES), 30)


@pytest.fixture(scope="module", params=["isotonic", "platt"])
def calibrated(request: pytest.FixtureRequest, booster: xgb.Booster,
               data: tuple[np.ndarray, np.ndarray]) -> XGBoostModel:
    rows, labels = data
    raw = XGBoostModel(booster)
    fit = fit_isotonic if request.param == "isotonic" else fit_platt
    # fitted on a validation window the booster did not train on
    return raw.with_calibration(fit(raw.predict_raw(rows[3000:]), labels[3000:]))


def _save(model: XGBoostModel | RiverModel, path: Path, fs: FeatureSet) -> str:
    return save_model(model, path, feature_set=fs.name, feature_set_version=fs.version).digest


def test_batch_and_one_row_scores_are_the_calibrated_raw_scores(
        calibrated: XGBoostModel, data: tuple[np.ndarray, np.ndarray]) -> None:
    rows = data[0][:1000]
    cal = calibrated.calibration
    assert cal is not None
    assert calibrated._scorer() is not None  # predict_one takes the one-row walker
    raw = calibrated.predict_raw(rows)
    batch = calibrated.predict(rows)
    one = np.array([calibrated.predict_one(row.tolist()) for row in rows])
    raw_one = np.array([calibrated.predict_raw_one(row.tolist()) for row in rows])
    assert raw_one.tobytes() == raw.tobytes()
    assert batch.tobytes() == one.tobytes() == cal.apply(raw).tobytes()
    assert not np.array_equal(batch, raw)  # the map did something


def test_calibration_makes_the_reweighted_booster_honest(
        booster: xgb.Booster, calibrated: XGBoostModel,
        data: tuple[np.ndarray, np.ndarray]) -> None:
    rows, labels = data[0][3000:], data[1][3000:]
    raw_gap = abs(XGBoostModel(booster).predict(rows).mean() - labels.mean())
    calibrated_gap = abs(calibrated.predict(rows).mean() - labels.mean())
    assert calibrated_gap < 0.01 < raw_gap


def test_with_calibration_leaves_the_original_serving_raw_scores(
        booster: xgb.Booster, data: tuple[np.ndarray, np.ndarray]) -> None:
    rows = data[0][:50]
    raw = XGBoostModel(booster)
    before = raw.predict(rows)
    cal = Calibration.platt(0.5, -1.0)
    copy = raw.with_calibration(cal)
    assert raw.calibration is None and copy.calibration is cal
    assert raw.predict(rows).tobytes() == before.tobytes() == raw.predict_raw(rows).tobytes()
    assert copy.with_calibration(None).predict(rows).tobytes() == before.tobytes()
    with pytest.raises(ModelError, match="expected a Calibration"):
        raw.with_calibration({"method": "platt"})  # type: ignore[arg-type]


def test_contributions_stay_in_raw_margin_space(calibrated: XGBoostModel,
                                                data: tuple[np.ndarray, np.ndarray]) -> None:
    rows = np.nan_to_num(data[0][:5])
    raw = calibrated.predict_raw(rows)
    logit = np.log(raw / (1 - raw))
    np.testing.assert_allclose(calibrated.contributions(rows).sum(axis=1), logit,
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(calibrated.path_contributions(rows[0].tolist()).sum(), logit[0],
                               rtol=1e-4, atol=1e-4)


def test_river_model_applies_its_calibration(river_model: RiverModel,
                                             rows: np.ndarray) -> None:
    cal = Calibration.isotonic([0.2, 0.5, 0.8], [0.01, 0.3, 0.9])
    calibrated = river_model.with_calibration(cal)
    raw = river_model.predict(rows[:100])
    assert calibrated.predict(rows[:100]).tobytes() == cal.apply(raw).tobytes()
    assert calibrated.predict_one(rows[0].tolist()) == cal.apply_one(float(raw[0]))
    assert calibrated.predict_raw(rows[:100]).tobytes() == raw.tobytes()


def test_artifact_round_trip_keeps_the_calibration(
        calibrated: XGBoostModel, feature_set: FeatureSet, tmp_path: Path,
        data: tuple[np.ndarray, np.ndarray]) -> None:
    digest = _save(calibrated, tmp_path, feature_set)
    manifest = read_manifest(tmp_path)
    cal = calibrated.calibration
    assert cal is not None
    assert set(manifest.files) == {"model.ubj", CALIBRATION_FILE}
    assert manifest.extra["calibration"] == {"method": cal.method, "points": cal.points}
    assert manifest.format_version == 2
    loaded = load_model(tmp_path, expected_digest=digest)
    assert loaded.calibration == cal
    rows = data[0][:500]
    assert loaded.predict(rows).tobytes() == calibrated.predict(rows).tobytes()
    assert loaded.predict_one(rows[3].tolist()) == calibrated.predict_one(rows[3].tolist())


def test_river_artifact_round_trip_keeps_the_calibration(
        river_model: RiverModel, rows: np.ndarray, feature_set: FeatureSet,
        tmp_path: Path) -> None:
    cal = Calibration.platt(1.3, -0.2)
    digest = _save(river_model.with_calibration(cal), tmp_path, feature_set)
    loaded = load_model(tmp_path, expected_digest=digest)
    assert isinstance(loaded, RiverModel) and loaded.calibration == cal
    np.testing.assert_allclose(loaded.predict(rows), cal.apply(river_model.predict(rows)))


def test_a_tampered_calibration_is_refused(xgb_model: XGBoostModel, feature_set: FeatureSet,
                                          tmp_path: Path) -> None:
    digest = _save(xgb_model.with_calibration(Calibration.platt(1.0, -2.0)), tmp_path,
                   feature_set)
    # someone makes the model look less risky by editing the intercept
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps(
        {"version": 1, "method": "platt", "a": 1.0, "b": -6.0, "eps": 1e-12}))
    with pytest.raises(IntegrityError, match=r"calibration\.json: sha256"):
        load_model(tmp_path, expected_digest=digest)
    with pytest.raises(IntegrityError, match=r"calibration\.json: sha256"):
        load_model(tmp_path, expected_digest=None)
    (tmp_path / CALIBRATION_FILE).unlink()
    with pytest.raises(IntegrityError, match=r"'calibration\.json' listed in the manifest"):
        load_model(tmp_path, expected_digest=digest)


def test_an_artifact_without_calibration_loads_as_before(
        xgb_model: XGBoostModel, rows: np.ndarray, feature_set: FeatureSet,
        tmp_path: Path) -> None:
    digest = _save(xgb_model, tmp_path, feature_set)
    stored = json.loads((tmp_path / MANIFEST_FILE).read_text())
    # exactly the manifest rtml wrote before calibration existed: same digests
    assert stored["format_version"] == 1 and "calibration" not in stored["extra"]
    assert set(stored["files"]) == {"model.ubj"}
    # a stray calibration.json that no manifest covers is not trusted, so not used
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps(Calibration.platt(1, -5).to_dict()))
    loaded = load_model(tmp_path, expected_digest=digest)
    assert loaded.calibration is None
    assert loaded.predict(rows).tobytes() == xgb_model.predict_raw(rows).tobytes()


def test_manifest_and_calibration_must_agree(xgb_model: XGBoostModel, feature_set: FeatureSet,
                                            tmp_path: Path) -> None:
    _save(xgb_model.with_calibration(Calibration.isotonic([0.1, 0.9], [0.0, 1.0])),
          tmp_path, feature_set)
    manifest = json.loads((tmp_path / MANIFEST_FILE).read_text())
    manifest["extra"]["calibration"] = {"method": "isotonic", "points": 3}
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=r"holds .*'points': 2.* records .*'points': 3"):
        load_model(tmp_path, expected_digest=None)
    del manifest["files"][CALIBRATION_FILE]
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=r"records a calibration .* lists no calibration\.json"):
        load_model(tmp_path, expected_digest=None)


def test_bad_calibration_content_is_a_model_error(xgb_model: XGBoostModel,
                                                  feature_set: FeatureSet,
                                                  tmp_path: Path) -> None:
    # a bad map listed with its own (matching) hash: written by a broken saver, not tampered
    _save(xgb_model.with_calibration(Calibration.isotonic([0.1, 0.9], [0.0, 1.0])),
          tmp_path, feature_set)
    (tmp_path / CALIBRATION_FILE).write_text('{"method":"isotonic","x":[0.9,0.1],"y":[0,1]}')
    manifest = json.loads((tmp_path / MANIFEST_FILE).read_text())
    manifest["files"][CALIBRATION_FILE] = file_sha256(tmp_path / CALIBRATION_FILE)
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="strictly increasing"):
        load_model(tmp_path, expected_digest=None)


def test_a_deep_copy_keeps_the_calibration(river_model: RiverModel, rows: np.ndarray) -> None:
    """The scorer checkpoints online models as deep copies: the map must travel with them."""
    calibrated = river_model.with_calibration(Calibration.isotonic([0.2, 0.8], [0.05, 0.6]))
    state = copy.deepcopy(calibrated)
    assert state.calibration == calibrated.calibration
    assert state.predict(rows).tobytes() == calibrated.predict(rows).tobytes()
