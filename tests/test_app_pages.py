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
def test_calibration_committed_set_measured_vs_predicted():
    at = _open("calibration")
    at.radio(key="cal_source").set_value("Committed trace set").run()
    at.selectbox(key="cal_set").set_value("data/dashboard_traces").run()
    assert not at.exception and not at.error
    df = calibration_view.measured_frame(calibration_view.load_folder(TRACES))
    spd = df[df["method"] == "spd"].iloc[0]
    assert abs(spd["accept_length_error_pct"]) < 2.0  # executor cycles follow the exact count K
    assert at.metric[2].value == f"{abs(spd['accept_length_error_pct']):.2f} %"
    fig = _chart(at, "calibration_chart")
    assert fig["data"][1]["x"][0] == pytest.approx(spd["accept_length_measured"])


@pytest.mark.parametrize("name,payload,message", [
    ("notes.txt", b"hello world", "notes.txt: line 1: not JSON"),
    ("image.png", b"\x89PNG\r\n\x1a\n\x00\x00", "image.png:"),
    ("trace.jsonl", None, "trace version 9 not supported"),
])
def test_calibration_bad_upload_is_a_message(name, payload, message):
    if payload is None:
        payload = (TRACES / "ar" / "trace.jsonl").read_text().replace('"version": 1', '"version": 9', 1).encode()
    at = _open("calibration")
    at.radio(key="cal_source").set_value("Upload trace files").run()
    at.file_uploader(key="cal_upload").set_value([(name, payload, "application/octet-stream")]).run()
    assert not at.exception
    assert at.error and message in at.error[0].value


def test_calibration_upload_good_trace():
    at = _open("calibration")
    at.radio(key="cal_source").set_value("Upload trace files").run()
    files = [(f"{r}.jsonl", (TRACES / r / "trace.jsonl").read_bytes(), "application/json") for r in ("ar", "spd2")]
    at.file_uploader(key="cal_upload").set_value(files).run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert list(table["method"]) == ["ar", "spd"] and table["speedup_vs_ar"].iloc[0] == pytest.approx(1.0)
