"""River online models: pickled state, loaded only when its digest is pinned."""

from rtml_models.river.model import RiverModel, default_online_model

__all__ = ["RiverModel", "default_online_model"]
