"""reference.prompts: the three evaluation sets through SmolLM2's chat template, and bad prompt files."""
from __future__ import annotations

import json

import pytest

from reference.prompts import PROMPT_SETS, encode_prompt, load_prompts
from sim.errors import InputError


@pytest.mark.parametrize("name", PROMPT_SETS)
def test_prompt_sets_load_and_encode(smollm2_tokenizer, name):
    tok = smollm2_tokenizer
    prompts = load_prompts(name, tok, max_seq_len=2048, max_new_tokens=256)
    assert len(prompts) == 80
    p = prompts[0]
    assert p.source == name and p.text
    assert list(p.token_ids) == tok.encode_chat([{"role": "user", "content": p.text}])
    assert tok.decode(p.token_ids).endswith(p.text + "<|im_end|>\n<|im_start|>assistant\n")
    assert all(len(q.token_ids) + 256 <= 2048 for q in prompts)


def test_limit_and_path(smollm2_tokenizer, tmp_path):
    tok = smollm2_tokenizer
    f = tmp_path / "mine.jsonl"
    f.write_text("\n".join(json.dumps({"question_id": i, "category": "c", "turns": [f"Q{i}?", "second"]})
                           for i in range(5)) + "\n\n")
    got = load_prompts(str(f), tok, max_seq_len=2048, limit=3)
    assert [p.question_id for p in got] == [0, 1, 2] and got[1].text == "Q1?" and got[0].source == "mine"


@pytest.mark.parametrize("content,msg", [
    ('{"turns": [""]}', "empty prompt"),
    ('{"turns": ["   "]}', "empty prompt"),
    ('{"turns": []}', "turns"),
    ('{"question_id": 1}', "turns"),
    ('{"turns": ["ok"]', "invalid JSON"),
    ('{"turns": ["' + "word " * 3000 + '"]}', "exceeds the context"),
    ("", "no prompts"),
])
def test_bad_prompt_files(smollm2_tokenizer, tmp_path, content, msg):
    tok = smollm2_tokenizer
    f = tmp_path / "bad.jsonl"
    f.write_text(content + "\n")
    with pytest.raises(InputError, match=msg):
        load_prompts(str(f), tok, max_seq_len=2048, max_new_tokens=16)


def test_missing_file_and_no_tokenizer(smollm2_tokenizer):
    with pytest.raises(InputError, match="not found"):
        load_prompts("/no/such.jsonl", smollm2_tokenizer, max_seq_len=2048)
    with pytest.raises(InputError, match="tokenizer"):
        load_prompts("gsm8k", None, max_seq_len=2048)
    with pytest.raises(InputError, match="exceeds"):
        encode_prompt(smollm2_tokenizer, "hello", max_seq_len=40, max_new_tokens=10)
