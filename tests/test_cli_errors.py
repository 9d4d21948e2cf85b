"""`spd`'s top level: running out of memory is one line on stderr and exit 1, other errors still surface."""
import pytest

from sim import cli


def _with_run(monkeypatch, exc):
    parser, modules = cli.build_parser()

    def run(args):
        raise exc

    monkeypatch.setattr(modules["predict"], "run", run)
    monkeypatch.setattr(cli, "build_parser", lambda: (parser, modules))


@pytest.mark.parametrize("exc", [RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate "
                                              "memory: you tried to allocate 29591076864 bytes"),
                                 RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), MemoryError()])
def test_out_of_memory_is_one_line_and_exit_1(monkeypatch, capsys, exc):
    _with_run(monkeypatch, exc)
    assert cli.main(["predict", "x.json"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("spd predict: error: out of memory")


def test_other_runtime_errors_are_not_hidden(monkeypatch):
    _with_run(monkeypatch, RuntimeError("a bug"))
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["predict", "x.json"])
