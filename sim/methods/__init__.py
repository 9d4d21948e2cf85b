"""Registry of decoding methods: name -> DecodingMethod instance."""
from __future__ import annotations

import importlib

from ..errors import InputError, where
from .base import DecodingMethod, MethodPrediction

REGISTRY: dict[str, DecodingMethod] = {}

# Modules that register a method when imported (one small module per method).
_METHOD_MODULES = ("ar", "ar_pipeline", "sd", "eagle3", "ppsd", "spd", "spd_speculative")


def register(cls: type[DecodingMethod]) -> type[DecodingMethod]:
    REGISTRY[cls.name] = cls()
    return cls


def _load_all() -> None:
    for mod in _METHOD_MODULES:
        importlib.import_module(f"{__name__}.{mod}")


def get_method(name: str, src: str | None = None, fld: str = "method") -> DecodingMethod:
    if not REGISTRY:
        _load_all()
    if name not in REGISTRY:
        raise InputError(f"{where(src, fld)}.method: unknown method {name!r} (known: {', '.join(sorted(REGISTRY))})")
    return REGISTRY[name]


def all_methods() -> dict[str, DecodingMethod]:
    if not REGISTRY:
        _load_all()
    return dict(REGISTRY)


__all__ = ["DecodingMethod", "MethodPrediction", "REGISTRY", "register", "get_method", "all_methods"]
