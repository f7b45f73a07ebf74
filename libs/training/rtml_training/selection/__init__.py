"""Model selection: prequential validation folds, a seeded search, the chosen configuration.

* :mod:`~rtml_training.selection.space` — the documented search space of each model family;
* :mod:`~rtml_training.selection.families` — how each family fits and scores (XGBoost,
  River, and the reference handbook's logistic regression and random forest);
* :mod:`~rtml_training.selection.search` — the Optuna search over validation folds.
"""
