"""The diagnostic scripts (scripts/pdm_probe.py, scripts/trace_overhead.py, scripts/repeat_spread.py): bad input
is a one-line error with exit status 2 (their real output needs the model, data or GPU traces; docs/training.md and docs/calibration.md)."""
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("pdm_probe", Path(__file__).parents[1] / "scripts" / "pdm_probe.py")
probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probe)


def test_missing_inputs_exit_2(tmp_path, capsys):
    assert probe.main(["--data", str(tmp_path / "none.safetensors"), "--draft", str(tmp_path / "ckpt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such file or directory" in err and "none.safetensors" in err


def test_trace_overhead_script_bad_path_exit_2(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, str(Path(__file__).parents[1] / "scripts" / "trace_overhead.py"),
                        str(tmp_path / "none")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == "" and "no such file or directory" in r.stderr


def test_repeat_spread_script_on_the_committed_sub_1b_repeats(tmp_path):
    """scripts/repeat_spread.py on session 10's 2x H100 repeats: one row per repeated pipeline configuration (10),
    qwen3-0.6b SPD alpha 1.0 14.5% apart with its median cycle 10% longer (the whole run slower, not a few stalls);
    a missing path is a one-line error, exit 2."""
    import subprocess
    import sys

    import pytest

    script = Path(__file__).parents[1] / "scripts" / "repeat_spread.py"
    traces = Path(__file__).parents[1] / "traces" / "h100x2_s10"
    if len(list(traces.glob("*"))) < 20:
        pytest.skip("committed GPU traces not present")
    r = subprocess.run([sys.executable, str(script), str(traces)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith("| ") and "configuration" not in line]
    assert len(rows) == 8
    row = next(line for line in rows if line.startswith("| qwen3-0.6b spd n=2 replay Ls=2 a=1 "))
    assert "428.8 / 374.5 (+14.5%) | +10.0% | +14.2% |" in row, row
    bad = subprocess.run([sys.executable, str(script), str(tmp_path / "none")], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stdout == "" and len(bad.stderr.strip().splitlines()) == 1
