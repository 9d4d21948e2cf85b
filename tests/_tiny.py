"""The tiny random-weight model shape several torch tests share (imported as ``from _tiny import tiny_config``:
pytest puts tests/ on sys.path). Its single-thread fixture is ``one_thread`` in conftest.py."""
from __future__ import annotations

from reference.model import ModelConfig

# grouped-query attention: 2 query heads per K/V head
_TINY = dict(name="tiny", vocab_size=97, hidden_size=64, intermediate_size=128, num_layers=8, num_heads=4,
             num_kv_heads=2, head_dim=16, max_seq_len=64)


def tiny_config(**overrides) -> ModelConfig:
    """The shared tiny shape, with ``overrides`` (e.g. ``num_layers=7``) replacing its fields."""
    return ModelConfig(**{**_TINY, **overrides})
