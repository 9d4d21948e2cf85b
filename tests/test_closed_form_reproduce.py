"""`spd reproduce`: the round trip of the published table is exact; the forecast covers every held-out row."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from sim.errors import InputError
from sim.reproduce import decay_chain_tau, fit_geometric_decay, forecast, load_published, round_trip, summarize

sys.path.insert(0, str(Path(__file__).parent))
from test_scenario_bad_input import spd  # noqa: E402


@pytest.fixture(scope="module")
def published():
    data, _ = load_published()
    return data


@pytest.mark.parametrize("tokens", [512, None])
def test_round_trip_regenerates_every_published_number(published, tokens):
    rt = round_trip(published, tokens)
    expected = sum(len(r["results"]) for r in published["results"])
    assert len(rt) == expected
    assert max(abs(e.predicted - e.published) for e in rt) < 1e-9
    assert all(0.0 <= e.alpha <= 1.0 for e in rt)


def test_round_trip_alpha_by_hand(published):
    rt = round_trip(published, None)
    e = next(e for e in rt if e.method == "spd" and e.config == "n=8 Ls=3" and e.model == "Qwen3.5-4B"
             and e.temperature == 0 and e.dataset == "overall" and e.training_mix == "default")
    assert e.alpha == pytest.approx(1 - (8 / 3.39 - 1) / 7)


def test_geometric_decay_fit_recovers_parameters():
    taus = {m: decay_chain_tau(0.8, 0.95, m) for m in (3, 7)}
    a1, d = fit_geometric_decay(taus)
    assert (a1, d) == pytest.approx((0.8, 0.95), abs=1e-6)


def test_forecast_covers_held_out_rows(published):
    fc = forecast(published)
    counts = {m: sum(e.method == m for e in fc) for m in ("eagle3", "spd", "ppsd")}
    # EAGLE-3: 2 mixes x 2 models x 2 temperatures x 4 datasets; SPD/PPSD n=16 exist for the default mix only
    assert counts == {"eagle3": 32, "spd": 16, "ppsd": 16}
    for s in summarize(fc):
        assert 0 <= s.median_rel <= s.worst_rel < 1.0


def test_reproduce_cli_json_and_missing_data(tmp_path):
    r = spd("reproduce", "--json")
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    assert obj["round_trip"]["max_abs_error"] < 1e-9 and obj["forecast"]["verdict"]
    r = spd("reproduce", "--data", str(tmp_path / "none.json"))
    assert r.returncode == 2 and "none.json" in r.stderr


def test_missing_data_error(tmp_path):
    with pytest.raises(InputError):
        load_published(tmp_path / "absent.json")
