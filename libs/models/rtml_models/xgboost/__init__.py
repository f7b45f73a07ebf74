"""XGBoost models stored as UBJSON (XGBoost's own safe binary format, no pickle)."""

from rtml_models.xgboost.model import XGBoostModel

__all__ = ["XGBoostModel"]
