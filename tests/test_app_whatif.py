"""What-if page (AppTest) and the pieces under it: the chart must carry the closed form's numbers."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app import charts, launch, presets, whatif_model
from sim import reproduce
from sim.closed_form import predict_scenario
from sim.errors import InputError

MAIN = str(Path(__file__).resolve().parents[1] / "app" / "main.py")


def _fig(at: AppTest, key: str = "speedup_chart") -> dict:
    for el in at.get("plotly_chart"):
        if key in el.proto.id:
            return json.loads(el.proto.spec)
    raise AssertionError(f"no plotly chart {key!r} on the page")


def _knobs(at: AppTest) -> whatif_model.Knobs:
    return whatif_model.Knobs(**{k: at.session_state[k] for k in whatif_model.Knobs().as_dict()})


def _spd_prediction(knobs: whatif_model.Knobs):
    return next(p for p in predict_scenario(whatif_model.build_scenario(knobs)) if p.method == "spd")


@pytest.fixture()
def at() -> AppTest:
    app = AppTest.from_file(MAIN, default_timeout=60)
    app.run()
    assert not app.exception and not app.error
    return app


def test_chart_carries_closed_form_at_chosen_stages(at):
    knobs = _knobs(at)
    fig = _fig(at)
    chosen = charts.trace(fig, "chosen SPD configuration")
    expected = _spd_prediction(knobs)
    assert chosen["x"] == [knobs.stages]
    assert chosen["y"][0] == pytest.approx(expected.wallclock_speedup, rel=1e-12)
    line = charts.trace(fig, "SPD · predicted wall-clock")
    assert line["y"][line["x"].index(knobs.stages)] == pytest.approx(expected.wallclock_speedup, rel=1e-12)
    theory = charts.trace(fig, "SPD · theoretical")
    assert theory["y"][theory["x"].index(knobs.stages)] == pytest.approx(expected.theoretical_speedup, rel=1e-12)
    # every method of the issue is on the one chart
    for label in ("SPD", "EAGLE-3", "PPSD", "Vanilla SD", "Pipelined AR"):
        charts.trace(fig, f"{label} · predicted wall-clock")
    assert at.metric[0].value == f"{expected.wallclock_speedup:.2f}x"


def test_best_configuration_is_the_maximum_of_the_curves(at):
    fig = _fig(at)
    best = charts.trace(fig, "best configuration")
    all_y = [y for t in fig["data"] if t["name"].endswith("predicted wall-clock") for y in t["y"]]
    assert best["y"][0] == pytest.approx(max(all_y))


def test_speculative_control_toggle_adds_its_curve_and_row(at):
    fig = _fig(at)
    assert not any(t["name"].startswith("SPD, speculative control") for t in fig["data"])  # off by default
    at.toggle(key="speculative_control").set_value(True).run()
    assert not at.exception and not at.error
    knobs = _knobs(at)
    pred = next(p for p in predict_scenario(whatif_model.build_scenario(knobs)) if p.method == "spd_speculative")
    line = charts.trace(_fig(at), "SPD, speculative control · predicted wall-clock")
    assert line["y"][line["x"].index(knobs.stages)] == pytest.approx(pred.wallclock_speedup, rel=1e-12)
    rows = at.dataframe[0].value.set_index("name")
    assert rows.loc["SPD, speculative control", "wallclock_speedup"] == pytest.approx(pred.wallclock_speedup)
    # the same alpha, a reject costing n cycles: fewer tokens per cycle than SPD's unless alpha = 1
    assert rows.loc["SPD, speculative control", "accept_length"] <= rows.loc["SPD", "accept_length"]


def test_slider_changes_move_chart_and_metrics(at):
    at.slider(key="stages").set_value(4).run()
    at.slider(key="hop_ms").set_value(0.5).run()
    assert not at.exception and not at.error
    knobs = _knobs(at)
    assert knobs.stages == 4 and knobs.hop_ms == 0.5
    chosen = charts.trace(_fig(at), "chosen SPD configuration")
    assert chosen["x"] == [4]
    assert chosen["y"][0] == pytest.approx(_spd_prediction(knobs).wallclock_speedup, rel=1e-12)
    # a slower hop lowers SPD's predicted speedup against the defaults
    assert chosen["y"][0] < _spd_prediction(whatif_model.Knobs.from_mapping({**knobs.as_dict(), "hop_ms": 0.15})).wallclock_speedup


def test_draft_exposed_region_follows_draft_layers(at):
    at.slider(key="draft_layers").set_value(8).run()
    knobs = _knobs(at)
    df = whatif_model.curves(knobs)
    first = whatif_model.draft_exposed_from(df)
    assert first is not None
    rect = [s for s in _fig(at)["layout"]["shapes"] if s["type"] == "rect"]
    assert rect and rect[0]["x0"] == pytest.approx(first - 0.5)
    assert any(f"n = {first}" in i.value for i in at.info)


def test_preset_sets_layers_and_times(at):
    at.selectbox(key="model").set_value("Llama-3.2-1B").run()
    at.selectbox(key="hardware").set_value("H100, CUDA graphs + NVLink").run()
    assert not at.exception and not at.error
    expect = presets.knob_defaults("Llama-3.2-1B", "H100, CUDA graphs + NVLink")
    assert at.number_input(key="layers").value == 16
    assert at.slider(key="layer_ms").value == pytest.approx(expect["layer_ms"])
    assert at.slider(key="hop_ms").value == pytest.approx(0.037)


def test_impossible_combination_is_an_error_message_not_a_traceback(at):
    at.slider(key="stages").set_value(12).run()
    at.number_input(key="layers").set_value(8).run()
    assert not at.exception
    assert at.error and "12 stages but the target has only 8 layers" in at.error[0].value
    assert not at.get("plotly_chart")


def test_presets_match_published_acceptance():
    """The published-target presets carry the alphas behind the published T=0 numbers (rounded to 0.01)."""
    data, _ = reproduce.load_published()
    rows = {(r["model"], r["method"], r.get("steps") or r.get("stages"), r.get("draft_layers")): r for r in data["results"]
            if r["training_mix"] == "default" and r["temperature"] == 0.0}
    for model in ("Qwen3.5-4B", "Qwen3.5-9B"):
        p = next(v for k, v in presets.MODELS.items() if k.startswith(model))
        for method, key, attr in (("spd", (8, 3), "alpha_spd"), ("eagle3", (7, None), "alpha_eagle3"), ("ppsd", (8, 1), "alpha_ppsd")):
            row = rows[(model, method, *key)]
            a = reproduce.alpha_from_published(method, row["results"]["overall"]["theoretical"], 32, row, reproduce.DEFAULT_TOKENS)
            assert getattr(p, attr) == pytest.approx(a, abs=0.006), (model, method)


def test_launcher_command_and_bad_port(capsys):
    cmd = launch.streamlit_command(8600, "127.0.0.1", "python")
    assert cmd[:4] == ["python", "-m", "streamlit", "run"] and cmd[4].endswith("app/main.py")
    assert "--server.address=127.0.0.1" in cmd and "--browser.gatherUsageStats=false" in cmd and "--server.headless=true" in cmd
    with pytest.raises(InputError, match="--port"):
        launch.streamlit_command(70000)
    with pytest.raises(InputError, match="--host"):
        launch.streamlit_command(8501, "not a host")
    from sim.cli import main

    assert main(["dashboard", "--port", "0"]) == 2
    assert "--port: must lie in 1..65535" in capsys.readouterr().err
    assert main(["dashboard", "--dry-run", "--port", "8555"]) == 0
    assert "--server.port=8555" in capsys.readouterr().out


# ------------------------------------------------------------------ measured acceptance, profile preset
def test_acceptance_file_sets_alpha_per_stages(at):
    from app import acceptance_view, ui

    committed = next(iter(acceptance_view.COMMITTED))
    table = acceptance_view.load_table(acceptance_view.COMMITTED[committed])
    at.slider(key="stages").set_value(4).run()
    at.selectbox(key="acc_source").set_value(committed).run()
    at.selectbox(key="acc_dataset").set_value("gsm8k").run()
    assert not at.exception and not at.error
    want = table.lookup("spd", "gsm8k", 0.0)[4]
    assert 0.2 < want < 0.95 and want != pytest.approx(at.session_state["alpha_spd"])  # the file, not the slider
    rows = at.dataframe[0].value.set_index("name")
    assert rows.loc["SPD", "alpha"] == pytest.approx(want)
    assert rows.loc["PPSD", "alpha"] == pytest.approx(table.lookup("ppsd", "gsm8k", 0.0)[4])
    spd = _spd_prediction(whatif_model.Knobs(**{**_knobs(at).as_dict(), "alpha_spd": want,
                                                 "alpha_ppsd": rows.loc["PPSD", "alpha"]}))
    assert at.metric[0].value == f"{spd.wallclock_speedup:.2f}x"
    at.selectbox(key="acc_temperature").set_value(1.0).run()
    assert at.dataframe[0].value.set_index("name").loc["SPD", "alpha"] == pytest.approx(table.lookup("spd", "gsm8k", 1.0)[4])
    # an n the file does not have: said in the page, the slider's alpha is used
    at.slider(key="stages").set_value(8).run()
    assert any("n = 8 is not in acceptance.json" in w.value for w in at.warning)
    assert at.dataframe[0].value.set_index("name").loc["SPD", "alpha"] == pytest.approx(at.session_state["alpha_spd"])
    assert ui.ACC_UPLOAD in at.selectbox(key="acc_source").options


@pytest.mark.parametrize("payload,message", [
    (b"not json at all", "bad.json: not a readable JSON file"),
    (b'{"format": "spd-acceptance", "version": 7, "results": []}', "bad.json: not an spd-acceptance file of version"),
])
def test_bad_acceptance_upload_is_a_message(at, payload, message):
    from app import ui

    at.selectbox(key="acc_source").set_value(ui.ACC_UPLOAD).run()
    at.file_uploader(key="acc_upload").set_value([("bad.json", payload, "application/json")]).run()
    assert not at.exception
    assert at.error and message in at.error[0].value
    assert _fig(at)  # the page still draws, on the sliders


def test_profile_hardware_preset_reproduces_published_cycle(at):
    """The committed published-implementation profile as a preset: at n=8 / L_s=3 its timings give the
    cycle the wall clock implies (4.75 ms, docs/calibration.md) and ~the published 2.53x."""
    name = next(iter(presets.PROFILE_PRESETS))
    assert "calibrated profile" in name.lower() and "published_qwen35_4b.json" in name
    at.selectbox(key="hardware").set_value(name).run()
    assert not at.exception and not at.error
    t = presets.profile_timings(str(presets.PROFILE_PRESETS[name]), presets.DEFAULT_MODEL, 8, 3)
    assert at.slider(key="layer_ms").value == pytest.approx(round(t["layer_ms"], 3))
    assert t["layer_ms"] == pytest.approx(0.8945, abs=1e-3) and t["hop_ms"] == pytest.approx(0.1303, abs=1e-3)
    spd = _spd_prediction(_knobs(at))
    assert spd.cycle_ms == pytest.approx(4.75, abs=0.03)
    assert spd.wallclock_speedup == pytest.approx(2.53, abs=0.08)


def test_measured_executor_profile_preset(at):
    """Our executor's 4x H200 profile as a preset: picking it sets the knobs to the profile's terms for the
    model preset (measured per-layer time where the profile has the shape, matched by name in any case)."""
    name = next(n for n in presets.PROFILE_PRESETS if "h200x4_full_traces.json" in n)
    at.selectbox(key="model").set_value("Qwen3-4B").run()
    at.selectbox(key="hardware").set_value(name).run()
    assert not at.exception and not at.error
    prof = presets._profile(str(presets.PROFILE_PRESETS[name]))
    measured = next(v for k, v in prof.stage.per_shape_layer_ms.items() if k.startswith("qwen3-4b:"))
    assert at.slider(key="layer_ms").value == pytest.approx(round(measured, 3))


def test_profile_preset_says_how_far_off_it_was_on_its_own_runs():
    """A profile calibrated with --self-check (the committed 4x H200 one) carries its leave-one-out errors into
    the preset's help text; the published profile (no executor runs) and hand-made presets do not."""
    name = next(n for n in presets.PROFILE_PRESETS if "h200x4_full_traces.json" in n)
    published = next(n for n in presets.PROFILE_PRESETS if "published" in n)
    assert "its own runs" in presets.hardware_note(name) and "uninstrumented runs median" in presets.hardware_note(name)
    assert "its own runs" not in presets.hardware_note(published)
    assert "its own runs" not in presets.hardware_note(next(iter(presets.HARDWARE)))
