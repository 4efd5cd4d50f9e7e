"""The checkout's top-level ``config.py``, loaded by path.

Engage runs from a checkout (templates and migrations are read from it), so ``config.py`` is
not installed as a top-level ``config`` module into site-packages, where it could shadow or be
shadowed by another distribution's. It is registered as ``config`` only when that name is free
(tests and tools that import ``config`` from the checkout then share the same module).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

CONFIG_PATH = Path(__file__).resolve().parent.parent / "config.py"


def _load() -> ModuleType:
    existing = sys.modules.get("config")
    if existing is not None and Path(getattr(existing, "__file__", "") or "") == CONFIG_PATH:
        return existing
    name = "config" if existing is None else "engage_config"
    spec = importlib.util.spec_from_file_location(name, CONFIG_PATH)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot read Engage's configuration from {CONFIG_PATH}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_config = _load()
Config = _config.Config
ConfigurationError = _config.ConfigurationError
load_config = _config.load_config
