"""SmolLM2-135M-Instruct from the embedded GGUF: tokenizer, chat template, and greedy output against the
record made by an independent implementation (transformers' GGUF loader; scripts/make_reference_greedy.py)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from reference.loaders import default_gguf_path
from reference.model import generate_greedy

REF = json.loads((Path(__file__).parent / "data" / "smollm2_reference_greedy.json").read_text())
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def test_gguf_file_is_the_recorded_one():
    digest = hashlib.sha256(default_gguf_path().read_bytes()).hexdigest()
    assert digest == SMOLLM2_SHA256 == REF["gguf_sha256"]


def test_config_matches_the_published_shape(smollm2):
    c = smollm2[0].config
    assert (c.num_layers, c.hidden_size, c.num_heads, c.num_kv_heads, c.intermediate_size, c.vocab_size) == (
        30, 576, 9, 3, 1536, 49152)
    assert c.tie_word_embeddings and c.rope_theta == 1e5 and c.eos_token_ids == (2,)
    assert smollm2[0].output.weight is smollm2[0].tok_embeddings.weight


@pytest.mark.parametrize("case", REF["encodings"], ids=lambda e: e["text"][:20])
def test_tokenizer_matches_reference_and_round_trips(smollm2, case):
    tok = smollm2[1]
    assert tok.encode(case["text"]) == case["ids"]
    assert tok.decode(case["ids"]) == case["text"]


def test_chat_template_renders_the_smollm2_format(smollm2):
    tok = smollm2[1]
    sysmsg = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Bye"}]
    want = (sysmsg + "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n"
            "<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n")
    assert tok.apply_chat_template(msgs) == want
    # an explicit system message replaces the default one; no generation prompt when asked
    own = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    assert tok.apply_chat_template(own, add_generation_prompt=False) == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n")
    ids = tok.encode_chat(msgs)
    # default system + 3 turns + the generation prompt: <|im_start|>, <|im_end|> are single special tokens
    assert ids.count(1) == 5 and ids.count(2) == 4


@pytest.mark.parametrize("i", range(len(REF["cases"])))
def test_chat_prompts_encode_like_reference(smollm2, i):
    case = REF["cases"][i]
    tok = smollm2[1]
    assert tok.apply_chat_template(case["messages"]) == case["template_text"]
    assert tok.encode_chat(case["messages"]) == case["prompt_ids"]


@pytest.mark.parametrize("i", range(len(REF["cases"])))
def test_greedy_output_matches_reference_token_for_token(smollm2, i):
    case = REF["cases"][i]
    model, tok = smollm2
    out = generate_greedy(model, case["prompt_ids"], REF["max_new_tokens"], eos=REF["eos_token_id"])
    assert out == case["greedy_ids"], tok.decode(out)


@torch.no_grad()
def test_stage_split_reproduces_greedy_logits(smollm2):
    """The real model split into 3 uneven stages gives bit-identical logits to the full model (fp32)."""
    model, _ = smollm2
    ids = torch.tensor([REF["cases"][1]["prompt_ids"]])
    T = ids.shape[1]
    full = model(ids, torch.arange(T), model.new_cache(1))
    h = model.embed(ids)
    for a, b in [(0, 7), (7, 19), (19, 30)]:
        s = model.stage(a, b)
        h, _ = s(h, torch.arange(T), s.new_cache(1))
    assert torch.equal(model.final_logits(h), full)
