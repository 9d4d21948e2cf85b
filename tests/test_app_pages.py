"""Timeline, Published and Calibration pages (AppTest): widgets change, charts carry the package's numbers,
bad input is an in-page message."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app import calibration_view, timeline_view, whatif_model
from sim import reproduce

ROOT = Path(__file__).resolve().parents[1]
MAIN = str(ROOT / "app" / "main.py")
TRACES = ROOT / "tests" / "data" / "dashboard_traces"


def _open(page: str) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=60)
    at.run()
    at.switch_page(f"views/{page}.py").run()
    assert not at.exception and not at.error, (at.exception, at.error)
    return at


def _charts(at: AppTest) -> dict[str, dict]:
    return {el.proto.id: json.loads(el.proto.spec) for el in at.get("plotly_chart")}


def _chart(at: AppTest, key: str) -> dict:
    return next(v for k, v in _charts(at).items() if key in k)


# ------------------------------------------------------------------------------------------- timeline
def test_timeline_shows_spd_and_baseline_one_row_per_rank():
    at = _open("timeline")
    knobs = whatif_model.Knobs(**{k: at.session_state[k] for k in whatif_model.Knobs().as_dict()})
    spd = _chart(at, "timeline_spd")
    rows = {y for t in spd["data"] for y in (t.get("y") or [])}
    assert rows == {"cycles", "rank 0 (controller)", *(f"rank {s} (stage {s})" for s in range(1, knobs.stages + 1))}
    names = {t["name"] for t in spd["data"]}
    # fill, steady state, a reject with its refill, the draft module: all visible in the default run
    assert {"cycle: fill", "cycle: steady", "cycle: refill after reject", "draft (PDM / draft model)", "rejected (flush)"} <= names
    run = timeline_view.run_timeline(knobs, "spd", 24, 3)
    assert at.metric[3].value == str(run.summary["cycles"])
    assert timeline_view.phase_counts(run.events)["fill"] == knobs.stages - 1
    # draft overlaps the stage forwards: a draft bar and a forward bar intersect in time
    draft = charts_bars(spd, "draft (PDM / draft model)")
    fwd = charts_bars(spd, "stage / target forward")
    assert any(a < d and c < b for a, b in draft for c, d in fwd)
    assert any("ar_pipeline" in k for k in _charts(at))


def charts_bars(fig: dict, name: str) -> list[tuple[float, float]]:
    t = next(t for t in fig["data"] if t["name"] == name)
    return [(b, b + x) for b, x in zip(t["base"], t["x"])]


def test_timeline_baseline_and_seed_change():
    at = _open("timeline")
    at.selectbox(key="tl_baseline").set_value("EAGLE-3").run()
    assert any("eagle3" in k for k in _charts(at))
    before = _chart(at, "timeline_spd")
    at.number_input(key="tl_seed").set_value(11).run()
    assert not at.exception and not at.error
    assert _chart(at, "timeline_spd") != before


# ------------------------------------------------------------------------------------------ published
def test_published_table_is_the_round_trip():
    at = _open("published")
    data, _ = reproduce.load_published()
    rt = reproduce.round_trip(data, reproduce.DEFAULT_TOKENS)
    assert at.metric[0].value == str(len(rt))
    table = at.dataframe[0].value
    row = table[(table["method"] == "SPD") & (table["config"] == "n=8 Ls=3")].iloc[0]
    want = next(e for e in rt if e.model == "Qwen3.5-4B" and e.temperature == 0.0 and e.training_mix == "default"
                and e.method == "spd" and e.config == "n=8 Ls=3" and e.dataset == "overall")
    assert row["overall"] == pytest.approx(want.predicted) and want.predicted == pytest.approx(3.39, abs=1e-9)
    at.selectbox(key="pub_model").set_value("Qwen3.5-9B").run()
    row = at.dataframe[0].value.set_index(["method", "config"]).loc[("SPD", "n=8 Ls=3")]
    assert row["overall"] == pytest.approx(3.61, abs=1e-9)
    fc = _chart(at, "forecast_chart")
    pts = [t for t in fc["data"] if t["name"] == "SPD · depth model"][0]
    assert len(pts["x"]) == sum(1 for e in reproduce.forecast(data) if e.method == "spd")


# ---------------------------------------------------------------------------------------- calibration
@pytest.mark.parametrize("trace_set", ["h100x4_2gpu_s8", "cpu"])
def test_calibration_committed_set_is_validate_runs(trace_set):
    """The table, metrics and scatter carry what `validate_runs` (leave one configuration out, as
    `spd validate`) returns for the committed set; cycle-level GPU runs are predicted, never fitted."""
    from sim.calibration.inputs import load_runs
    from sim.calibration.validate import error_summary, validate_runs

    at = _open("calibration")
    assert at.selectbox(key="cal_set").value == "traces/h100x4_2gpu_s8"  # the default
    at.selectbox(key="cal_set").set_value(f"traces/{trace_set}").run()
    assert not at.exception and not at.error
    runs = load_runs([str(ROOT / "traces" / trace_set)], require_full=False)
    preds = validate_runs(runs)
    table = at.dataframe[0].value.set_index("run")
    assert len(table) == len(preds) >= 9
    for r, p in zip(runs, preds):
        row = table.loc[Path(p.path).parent.name]
        assert row["role"] == (calibration_view.FITTED if r.fittable else calibration_view.PREDICTED_ONLY)
        assert row["measured_tokens_per_s"] == pytest.approx(p.measured_tokens_per_s)
        for col, v in (("predicted_tokens_per_s", p.predicted_tokens_per_s), ("predicted_speedup", p.predicted_speedup),
                       ("measured_speedup", p.measured_speedup),
                       ("error_speedup_pct", None if p.rel_error_speedup is None else 100 * p.rel_error_speedup)):
            assert (v is None and row[col] != row[col]) or row[col] == pytest.approx(v), (p.label, col)
    s = error_summary(preds)
    assert at.metric[1].value == str(s["predicted"])
    assert at.metric[2].value == f"{100 * s['median_abs_rel_error']:.1f} %"
    assert at.metric[3].value == f"{100 * s['max_abs_rel_error']:.1f} %"
    fig = _chart(at, "validation_speedup_chart")
    assert fig["data"][0]["x"] == fig["data"][0]["y"]  # the y = x line
    have = sorted(v for t in fig["data"][1:] for v in zip(t["x"], t["y"]))
    want = sorted((p.measured_speedup, p.predicted_speedup) for p in preds if p.predicted_speedup is not None)
    assert [v for xy in have for v in xy] == pytest.approx([v for xy in want for v in xy])
    if trace_set == "h100x4_2gpu_s8":
        cyc = table[table["role"] == calibration_view.PREDICTED_ONLY]
        assert len(cyc) >= 3 and cyc.loc["qwen3-4b_spd2_a0.8_cycle", "predicted_speedup"] > 0
        # the accept-length accounting (executor cycle counts vs the exact K formula) still holds
        acc = at.dataframe[1].value.dropna(subset=["accept_length_measured"])
        assert len(acc) and acc["accept_length_error_pct"].abs().max() < 2.0


@pytest.mark.parametrize("name,payload,message", [
    ("notes.txt", b"hello world", "notes.txt: line 1: not JSON"),
    ("image.png", b"\x89PNG\r\n\x1a\n\x00\x00", "image.png:"),
    ("broken.gz", b"\x1f\x8b\x08\x00", "broken.gz: not a readable compressed trace"),
    ("broken.xz", b"\xfd7zXZ\x00\x00", "broken.xz: not a readable compressed trace"),
    ("trace.jsonl", None, "trace version 9 not supported"),
])
def test_calibration_bad_upload_is_a_message(name, payload, message):
    if payload is None:
        payload = (TRACES / "ar" / "trace.jsonl").read_text().replace('"version": 1', '"version": 9', 1).encode()
    at = _open("calibration")
    at.radio(key="cal_source").set_value("Upload trace files").run()
    at.file_uploader(key="cal_upload").set_value([(name, payload, "application/octet-stream")]).run()
    assert not at.exception
    assert len(at.error) == 1 and message in at.error[0].value and "\n" not in at.error[0].value.strip()


def test_calibration_upload_good_traces():
    at = _open("calibration")
    at.radio(key="cal_source").set_value("Upload trace files").run()
    files = [("ar.jsonl", (TRACES / "ar" / "trace.jsonl").read_bytes(), "application/json"),  # plain, xz, gzip
             ("arp.jsonl.xz", __import__("lzma").compress((TRACES / "arp" / "trace.jsonl").read_bytes()), "application/x-xz"),
             ("spd2.jsonl.gz", __import__("gzip").compress((TRACES / "spd2" / "trace.jsonl").read_bytes()), "application/gzip")]
    at.file_uploader(key="cal_upload").set_value(files).run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert list(table["method"]) == ["ar", "ar_pipeline", "spd"]
    ar = table["measured_tokens_per_s"].iloc[0]
    assert table["measured_speedup"].iloc[1] == pytest.approx(table["measured_tokens_per_s"].iloc[1] / ar)


def test_calibration_forecasts_a_set_with_repeats_from_a_profile():
    """A committed set whose configurations were run three times (session 10's 4-GPU runs), forecast from the
    2-GPU profile of another host as `spd validate --profile` does: every run predicted, the repeat spread and each
    configuration's error of the mean under the metrics, the profile's other machine named; the default set
    (leave one out, no repeats) gets none of those lines."""
    at = _open("calibration")
    assert not [c for c in at.caption if "measured more than once" in c.value or "Per configuration" in c.value]
    at.selectbox(key="cal_set").set_value("traces/h100x4_s10").run()
    at.selectbox(key="cal_profile").set_value("every run from profiles/h100x4_2gpu_s8.json").run()
    assert not at.exception and not at.error
    captions = [c.value for c in at.caption]
    floor = [c for c in captions if "measured more than once" in c]
    assert len(floor) == 1 and floor[0].startswith("Noise floor: 13 configuration(s)"), floor
    assert [c for c in captions if c.startswith("Per configuration: each configuration's mean over its runs (13")]
    table = at.dataframe[0].value
    assert len(table) == 39 and set(table["role"]) == {"forecast from the profile"}
    assert table["error_speedup_pct"].notna().sum() == 33  # every pipeline run: a speedup over the set's AR runs
    conf = at.dataframe[1].value  # each configuration's mean (the expander under the run table)
    assert len(conf) == 13 and (conf["runs"] == 3).all() and conf["rel_error"].abs().max() < 6.0
