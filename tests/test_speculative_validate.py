"""The loop for speculative control: a --speculative-control run is never fitted on, and `spd validate` predicts
it (method spd_speculative) from a profile of the default-control runs (CPU, gloo, real processes)."""
import json
from pathlib import Path

import pytest

from sim.calibration.extract import measure_trace
from sim.traces import load_trace
from sim.calibration.validate import validate_runs
from sim.cli import main
from sim.errors import InputError

TINY = ('random:custom:{"name":"tiny","vocab_size":97,"hidden_size":64,"intermediate_size":128,"num_layers":6,'
        '"num_heads":4,"num_kv_heads":2,"head_dim":16,"max_seq_len":128}')


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("spec")
    prompts = d / "p.jsonl"
    prompts.write_text("".join(json.dumps({"question_id": i, "prompt_ids": ids}) + "\n"
                               for i, ids in enumerate([[5, 9, 12, 7, 3, 44], [8, 1, 2, 3, 60, 17, 22]])))
    out = {}
    for name, extra in (("default", ()), ("spec", ("--speculative-control",))):
        assert main(["run", "--model", TINY, "--method", "spd", "--stages", "2", "--draft", "replay", "--alpha", "0.7",
                     "--max-new-tokens", "24", "--prompts", str(prompts), "--out", str(d / name), *extra]) == 0
        out[name] = d / name
    return out


def test_speculative_runs_are_validation_targets_only(runs):
    spec = measure_trace(load_trace(runs["spec"]), require_full=False)
    assert spec.control == "speculative" and spec.model_method == "spd_speculative" and not spec.fittable
    with pytest.raises(InputError, match="speculative"):
        measure_trace(load_trace(runs["spec"]), require_full=True)
    default = measure_trace(load_trace(runs["default"]), require_full=False)
    assert default.fittable and default.config_key != spec.config_key


def test_validate_predicts_speculative_from_default(runs):
    preds = validate_runs([measure_trace(load_trace(runs["default"]), require_full=False),
                           measure_trace(load_trace(runs["spec"]), require_full=False)])
    spec = next(p for p in preds if "spd_speculative" in p.label)
    assert spec.predicted_tokens_per_s and spec.closed_form_tokens_per_s
    assert abs(spec.rel_error_tokens_per_s) < 1.0  # the loop, not accuracy: CPU timings on 2 shared cores
