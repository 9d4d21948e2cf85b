"""The diagnostic scripts (scripts/pdm_probe.py, scripts/trace_overhead.py): bad input is a one-line error with
exit status 2 (their real output needs the model, data or GPU traces; docs/training.md and docs/calibration.md)."""
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
