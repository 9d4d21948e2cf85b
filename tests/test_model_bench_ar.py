"""scripts/gpu/bench_ar.py on CPU with a tiny custom shape: runs end to end, writes its JSON, rejects bad flags."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from reference.loaders import load_model

_SPEC = importlib.util.spec_from_file_location("bench_ar", Path(__file__).parents[1] / "scripts/gpu/bench_ar.py")
bench_ar = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench_ar)

TINY = ('custom:{"vocab_size": 300, "hidden_size": 32, "intermediate_size": 64, "num_layers": 3, '
        '"num_heads": 4, "num_kv_heads": 2, "head_dim": 8, "qk_norm": true, "tie_word_embeddings": true}')


def test_cpu_run_writes_json(tmp_path, capsys):
    rc = bench_ar.main(["--device", "cpu", "--shape", TINY, "--tokens", "6", "--warmup", "1", "--prompt-len", "5",
                        "--out", str(tmp_path)])
    assert rc == 0
    res = json.loads((tmp_path / "bench_ar.json").read_text())
    (row,) = res["rows"]
    assert row["shape"] == "custom" and row["eager"]["n_tokens"] == 6 and row["tokens_match"] is True
    assert row["eager"]["median_ms"] > 0 and "graph" not in row  # no CUDA graph on CPU
    assert row["max_seq_len"] % 64 == 0 and row["max_seq_len"] >= 5 + 1 + 6
    assert res["environment"]["device"] == "cpu"
    assert "custom" in capsys.readouterr().out


def test_bytes_read_per_token_counts_tied_head_once():
    model, _ = load_model("random:" + TINY, "cpu", max_seq_len=64)
    c = model.config
    got = bench_ar.bytes_read_per_token(model)
    assert got["weight_bytes"] == c.num_params * 4
    assert got["kv_cache_bytes"] == 2 * 3 * 2 * 64 * 8 * 4
    assert bench_ar.hbm_tb_s("NVIDIA H100 80GB HBM3") == 3.35 and bench_ar.hbm_tb_s("NVIDIA H200") == 4.8


def test_cpu_variants_table_and_json(tmp_path, capsys):
    rc = bench_ar.main(["--device", "cpu", "--shape", TINY, "--tokens", "3", "--warmup", "1", "--prompt-len", "5",
                        "--variants", "fused_norm,float_mask,head_bf16,sdpa_math,flash_seqused", "--out", str(tmp_path)])
    assert rc == 0
    res = json.loads((tmp_path / "bench_ar_variants.json").read_text())
    rows = {r["variant"]: r for r in res["rows"]}
    assert list(rows) == ["base", "fused_norm", "float_mask", "head_bf16", "sdpa_math", "flash_seqused"]
    assert rows["flash_seqused"]["skipped"] == "needs CUDA"
    for name in ("base", "float_mask", "sdpa_math"):  # numerically identical paths
        assert rows[name]["tokens_match"] is True and rows[name]["n_tokens"] == 3
    assert rows["fused_norm"]["median_ms"] > 0 and "error" not in rows["fused_norm"]
    out = capsys.readouterr().out
    assert "ms/token" in out and "head_bf16" in out
    assert bench_ar.main(["--device", "cpu", "--shape", TINY, "--variants", "nope"]) == 2


def test_decode_options_default_restores_reference():
    model, _ = load_model("random:" + TINY, "cpu", max_seq_len=64)
    x = torch.randint(0, 300, (1, 7))
    ref = model(x, torch.arange(7), model.new_cache(1))
    model.set_decode_options(fused_norm=True, float_mask=True, logits_fp32=False)
    fast = model(x, torch.arange(7), model.new_cache(1))
    model.set_decode_options(float_mask=True)  # float mask alone: same numbers
    assert torch.equal(model(x, torch.arange(7), model.new_cache(1)), ref)
    model.set_decode_options()
    assert torch.equal(model(x, torch.arange(7), model.new_cache(1)), ref)
    assert torch.allclose(fast.float(), ref, atol=1e-4)
    with pytest.raises(ValueError):
        model.set_decode_options(attn_impl="xformers")


@pytest.mark.parametrize("argv", [["--tokens", "0"], ["--warmup", "-1"], ["--shape", "gpt-7"],
                                  ["--device", "quantum"]])
def test_bad_arguments_exit_2(argv, capsys):
    assert bench_ar.main(["--device", "cpu", *argv]) == 2
    assert "bench_ar: error:" in capsys.readouterr().err
