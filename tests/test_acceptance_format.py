"""Acceptance emulation (schedule replay), result summaries and the scenario input `{"file": ...}`."""
from __future__ import annotations

import json

import numpy as np
import pytest

from reference.training.data import NgramIndex, TrainingData, clean_instruction
from reference.training.emulate import chain_schedule, pipeline_schedule
from reference.training.results import FORMAT, VERSION, by_dataset, chain_summary, markdown, pipeline_summary
from sim.closed_form import spd_cycles
from sim.errors import InputError
from sim.scenario import parse_acceptance


@pytest.mark.parametrize("n", [2, 3, 4, 6])
def test_schedule_obeys_exact_cycle_count_and_warmup_depths(n):
    rng = np.random.default_rng(n)
    table = rng.random((400, n)) < 0.7
    run = pipeline_schedule(10, 200, n, lambda t, m: bool(table[t, m - 1]))
    assert run.cycles == int(spd_cycles(200, n, run.refill_rejects))
    assert len(run.accepts) == 199  # every committed token after the first comes from one verification
    # after each reject (and at the start) the next drafts verified were made with 1, 2, ... tokens in flight
    assert run.inflight[0] == 1
    for i in range(1, len(run.accepts)):
        expect = 1 if not run.accepts[i - 1] else min(n, run.inflight[i - 1] + 1)
        assert run.inflight[i] == expect


def test_all_accepted_and_all_rejected_limits():
    full = pipeline_schedule(0, 50, 4, lambda t, m: True)
    assert full.refill_rejects == 0 and full.cycles == 50 + 4 - 2
    none = pipeline_schedule(0, 50, 4, lambda t, m: False)
    assert none.cycles == 50 + 2 + 3 * 48  # the last reject ends the generation: no refill after it
    c = chain_schedule(0, 21, 5, lambda s, k: True)
    assert c.rounds == [5, 5, 5, 2] and c.drafted == [5, 5, 5, 2]  # 1 + 3*6 + 2 = 21 tokens


def _records():
    recs = []
    for ds, acc in (("a", "1101"), ("b", "0111")):
        run = pipeline_schedule(3, 5, 2, lambda t, m, acc=acc: acc[t - 3] == "1")
        recs.append({"dataset": ds, "question_id": 1, "prompt_len": 3, "tokens": 5, "cycles": run.cycles,
                     "refill_rejects": run.refill_rejects, "accepts": "".join("1" if x else "0" for x in run.accepts)})
    return recs


def test_summaries_and_scenario_file_input(tmp_path):
    recs = _records()
    summ = by_dataset(recs, lambda r: pipeline_summary(r, 2, 30, 15, 2, "spd"))
    assert summ["overall"]["verified_drafts"] == 8 and summ["overall"]["accepted_drafts"] == 6
    assert summ["overall"]["alpha_pooled"] == pytest.approx(0.75)
    a = summ["a"]
    assert a["l_acc_mean_of_ratios"] == pytest.approx(2 * 5 / a["cycles"])
    chain_recs = [{"dataset": "a", "question_id": 1, "tokens": 8, "rounds": [2, 0, 2], "drafted": [3, 3, 2]}]
    cs = chain_summary(chain_recs, 3, 30, 1)
    assert cs["per_position_verified"] == [3, 2, 1] and cs["per_position_accepted"] == [2, 2, 0]
    assert cs["tau_pooled"] == pytest.approx(7 / 3)
    doc = {"format": FORMAT, "version": VERSION, "results": [
        {"method": "spd", "stages": 2, "temperature": 0.0, "summary": summ, "prompts": recs},
        {"method": "chain", "steps": 3, "temperature": 0.0, "summary": {"a": cs, "overall": cs}, "prompts": chain_recs}]}
    f = tmp_path / "acc.json"
    f.write_text(json.dumps(doc))
    acc = parse_acceptance({"file": "acc.json", "dataset": "b"}, "scen.json", "acceptance", tmp_path)
    assert acc.form == "file" and acc.sequence == tuple(int(c) for c in recs[1]["accepts"])
    assert acc.alpha == pytest.approx(summ["b"]["alpha_pooled"])
    ch = parse_acceptance({"file": str(f), "method": "chain"}, None, "acceptance")
    assert ch.per_position == (2 / 3, 1.0, 0.0) and ch.sequence == (1, 1, 0, 0, 1, 1)
    assert "| SPD | 2 |" in markdown(doc) and "pos 3" in markdown(doc)
    for bad in ({"file": "nope.json"}, {"file": "acc.json", "dataset": "zzz"}, {"file": "acc.json", "stages": 3},
                {"file": "acc.json", "method": "eagle"}, {"file": "acc.json", "extra": 1},
                {"file": "acc.json", "temperature": 1}):
        with pytest.raises(InputError):
            parse_acceptance(bad, "scen.json", "acceptance", tmp_path)


def test_simulator_replays_a_file_sequence(tmp_path):
    """The DES acceptance source replays the recorded sequence in order."""
    from sim.des.acceptance import AcceptanceSource

    recs = _records()
    summ = by_dataset(recs, lambda r: pipeline_summary(r, 2, 30, 15, 2, "spd"))
    doc = {"format": FORMAT, "version": VERSION,
           "results": [{"method": "spd", "stages": 2, "temperature": 0.0, "summary": summ, "prompts": recs}]}
    (tmp_path / "acc.json").write_text(json.dumps(doc))
    acc = parse_acceptance({"file": "acc.json"}, None, "acceptance", tmp_path)
    src = AcceptanceSource(acc, seed=0)
    assert src.outcomes(8).tolist() == [int(c) for c in recs[0]["accepts"] + recs[1]["accepts"]]


def test_overlap_index_and_data_round_trip(tmp_path):
    idx = NgramIndex(["Compose an engaging travel blog post about a recent trip to Hawaii, highlighting culture"], 8)
    assert idx.hits("Please compose an engaging travel blog post about a recent trip to Hawaii now") > 0
    assert idx.hits("Write a travel blog post about Hawaii") == 0
    assert clean_instruction('Question: "What makes volcanoes erupt so violently?"\n\nMore text') == \
        "What makes volcanoes erupt so violently?"
    assert clean_instruction("short") is None
    d = TrainingData([[1, 2, 3, 4], [5, 6, 7]], [2, 1], [True, False], {"k": 1})
    d.save(tmp_path / "d.safetensors")
    e = TrainingData.load(tmp_path / "d.safetensors")
    assert e.seqs == d.seqs and e.prompt_lens == [2, 1] and e.sampled == [True, False] and e.provenance == {"k": 1}
    assert e.vocab_counts(10).tolist() == [0, 0, 0, 1, 1, 0, 1, 1, 0, 0]  # generated parts only
    with pytest.raises(InputError):
        TrainingData.load(tmp_path / "missing.safetensors")
    (tmp_path / "d.json").write_text("{}")
    with pytest.raises(InputError):
        TrainingData.load(tmp_path / "d.safetensors")


def test_training_data_shards_load_as_one_set(tmp_path):
    """make_data --shard I/K writes disjoint parts; train-draft --data A,B trains on their concatenation."""
    from reference.training.make_data import _parse_shard

    TrainingData([[1, 2, 3]], [1], [False], {"shard": "0/2"}).save(tmp_path / "a.safetensors")
    TrainingData([[4, 5, 6, 7]], [2], [True], {"shard": "1/2"}).save(tmp_path / "b.safetensors")
    d = TrainingData.load_many([tmp_path / "a.safetensors", tmp_path / "b.safetensors"])
    assert d.seqs == [[1, 2, 3], [4, 5, 6, 7]] and d.prompt_lens == [1, 2] and d.sampled == [False, True]
    assert [p["shard"] for p in d.provenance["parts"]] == ["0/2", "1/2"]
    # another session's data repeats a template prompt's greedy answer: it is kept once
    TrainingData([[4, 5, 6, 7], [8, 9]], [2, 1], [True, False], {"session": 2}).save(tmp_path / "c.safetensors")
    e = TrainingData.load_many([tmp_path / n for n in ("a.safetensors", "b.safetensors", "c.safetensors")])
    assert e.seqs == [[1, 2, 3], [4, 5, 6, 7], [8, 9]] and e.prompt_lens == [1, 2, 1] and e.sampled == [False, True, False]
    assert e.provenance["duplicates_dropped"] == 1
    assert _parse_shard("1/2") == (1, 2)
    for bad in ("2/2", "x", "1/0"):
        with pytest.raises(InputError):
            _parse_shard(bad)


def test_continued_training_keeps_the_checkpoints_vocabulary():
    """A later training call (fresh machine, data generated again) continues the committed drafters with their
    own draft vocabulary, so the warm start applies."""
    from pathlib import Path

    from reference.commands.train_draft import _checkpoint_vocab

    ckpts = Path(__file__).parents[1] / "reference" / "checkpoints"
    ids = _checkpoint_vocab(ckpts, "smollm2", 16384)
    assert ids is not None and ids.numel() == 16384 and bool((ids[1:] > ids[:-1]).all())
    assert _checkpoint_vocab(ckpts, "smollm2", 1000) is None
    assert _checkpoint_vocab(ckpts, "no-such-prefix", 16384) is None


def test_chain_teacher_forced_positions_are_free_of_survivor_selection():
    """A head that is right at every start with an easy next token and wrong elsewhere: conditional acceptance
    at deep positions only sees the easy runs (rising), the teacher-forced one counts every start."""
    from reference.training.evaluate import teacher_forced_positions

    P, G, steps = 2, 12, 3
    easy = np.array([1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0], dtype=float)  # position j's token is easy
    table = np.zeros((P + G + 1, steps))
    for s in range(P + G):
        for k in range(1, steps + 1):
            table[s, k - 1] = easy[min(s + k, len(easy) - 1)]
    sums, starts = teacher_forced_positions(table, P, G, steps)
    assert starts == [G - 1, G - 2, G - 3]  # draft k from start s predicts s + k <= P + G - 1
    assert sums == [float(table[P:P + G - k, k - 1].sum()) for k in range(1, steps + 1)]
    run = chain_schedule(P, G, steps, lambda s, k: bool(table[s, k - 1]))
    rec = {"dataset": "a", "question_id": 1, "tokens": G, "rounds": run.rounds, "drafted": run.drafted,
           "tf_accepted": sums, "tf_starts": starts}
    cs = chain_summary([rec], steps, 30, 1)
    tf = cs["per_position_alpha_teacher_forced"]
    assert tf == pytest.approx([sums[k] / starts[k] for k in range(steps)])
    assert cs["per_position_starts_teacher_forced"] == starts
    # an old record without the keys gives None, not a crash
    assert chain_summary([{k: v for k, v in rec.items() if not k.startswith("tf_")}], steps, 30, 1)[
        "per_position_alpha_teacher_forced"] is None
