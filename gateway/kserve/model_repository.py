"""The models a `ModelServer` serves, by name (`kserve.model_repository`)."""

from __future__ import annotations

import os
from typing import Dict, Optional

from .model import BaseKServeModel

MODEL_MOUNT_DIRS = "/mnt/models"


class ModelRepository:
    """Registered models by name. `load`/`load_model` are hooks a subclass overrides to load a
    model by name on demand (KServe's repository extension); by default they do nothing."""

    def __init__(self, models_dir: str = MODEL_MOUNT_DIRS):
        self.models: Dict[str, BaseKServeModel] = {}
        self.models_dir = models_dir

    def load_models(self):
        """Call `load_model(name)` for each folder of `models_dir`."""
        for name in os.listdir(self.models_dir):
            if os.path.isdir(os.path.join(self.models_dir, name)):
                self.load_model(name)

    def set_models_dir(self, models_dir: str):
        self.models_dir = models_dir

    def get_model(self, name: str) -> Optional[BaseKServeModel]:
        return self.models.get(name)

    def get_models(self) -> Dict[str, BaseKServeModel]:
        return self.models

    async def is_model_ready(self, name: str) -> bool:
        model = self.get_model(name)
        if model is None:
            return False
        return await model.healthy()

    def update(self, model: BaseKServeModel, name: Optional[str] = None):
        """Add or replace a model, under `name` (another name for the same model) or its own."""
        self.models[name or model.name] = model

    def load(self, name: str) -> bool:
        """Load the model `name` on demand; whether it loaded. This repository loads none by name."""
        return False

    def load_model(self, name: str) -> bool:
        """Load the model in `models_dir/name`; whether it loaded. This repository loads none by name."""
        return False

    def unload(self, name: str):
        """Stop a model (`stop()`, and `stop_engine()` if it has an engine) and forget it."""
        if name not in self.models:
            raise KeyError(f"model with name {name} does not exist")
        model = self.models[name]
        if callable(getattr(model, "stop", None)):
            model.stop()
        if model.engine:
            model.stop_engine()
        del self.models[name]
