"""rtml training pipeline: simulator data -> batch features -> split -> fit -> evaluate ->
MLflow run -> registered model.

Entry point: :func:`rtml_training.pipeline.train` with a
:class:`rtml_training.config.TrainConfig` (or ``rtml train``). This package
module imports nothing heavy, so importing a light submodule (``split``,
``reference``) does not pull in MLflow, XGBoost or River.
"""
