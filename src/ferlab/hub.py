"""Deprecated location: model-name resolution lives in :mod:`ferlab.models.hub`."""
from .models.hub import PRETRAINED_DIR, ShippedModel, default_model, load, resolve_model, shipped_models  # noqa: F401
