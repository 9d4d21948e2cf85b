"""`spd` command line: one entry point, subcommands registered by the modules that implement them.

Each command module exposes ``add_arguments(parser)`` and ``run(args) -> int``. Modules are listed
here by dotted path and imported only when their command runs (torch-backed commands stay cheap to
list). Bad input (InputError) becomes one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from .errors import InputError

# name -> (module, one-line help). Modules must not import torch at module level.
COMMANDS: dict[str, tuple[str, str]] = {
    "predict": ("sim.commands.predict", "closed-form speedup of every method in a scenario file"),
    "sweep": ("sim.commands.sweep", "vectorised closed-form grid (stages x alpha x hop ...) to CSV"),
    "reproduce": ("sim.commands.reproduce", "regenerate the published theoretical table and forecast held-out rows"),
    "simulate": ("sim.commands.simulate", "discrete-event (SimPy) simulation of a scenario, with a timeline"),
    "run": ("reference.commands.run", "run AR / AR-pipeline / SPD for real on torch.distributed"),
    "train-draft": ("reference.commands.train_draft", "distil the pipeline draft module (and chain/PPSD baselines)"),
    "eval-acceptance": ("reference.commands.eval_acceptance", "measure draft acceptance on the evaluation prompts"),
    "calibrate": ("sim.commands.calibrate", "fit a hardware profile from executor traces"),
    "validate": ("sim.commands.validate", "leave-one-configuration-out predicted vs measured speedup"),
    "split": ("sim.commands.split", "the stage split (layers per stage) a calibrated profile predicts fastest"),
    "dashboard": ("app.launch", "start the Streamlit what-if dashboard"),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own usage errors: one line, exit 2
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def _available() -> dict[str, tuple[str, str]]:
    import importlib.util

    out = {}
    for name, (mod, hlp) in COMMANDS.items():
        try:
            if importlib.util.find_spec(mod) is not None:
                out[name] = (mod, hlp)
        except ModuleNotFoundError:
            pass
    return out


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = _Parser(prog="spd", description="Speculative Pipeline Decoding lab")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    modules = {}
    for name, (mod, hlp) in _available().items():
        p = sub.add_parser(name, help=hlp, description=hlp)
        module = importlib.import_module(mod)
        module.add_arguments(p)
        modules[name] = module
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        return int(modules[args.command].run(args) or 0)
    except InputError as exc:
        sys.stderr.write(f"spd {args.command}: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"spd {args.command}: interrupted\n")
        return 130
    except (MemoryError, RuntimeError) as exc:  # host or GPU memory ran out: say so in one line, no traceback
        text = str(exc)
        if not isinstance(exc, MemoryError) and "out of memory" not in text and "can't allocate memory" not in text:
            raise
        sys.stderr.write(f"spd {args.command}: error: out of memory ({text.splitlines()[0][:160] if text else 'MemoryError'}); "
                         "a smaller batch (e.g. --gen-batch, --batch-size) may fit\n")
        return 1
    except BrokenPipeError:  # `spd predict | head`: the reader left; not an error of ours
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0


def run_reporting_input_errors(prog: str, run, args) -> int:
    """``run(args)`` for a stand-alone entry point (``python -m ...``): bad input (InputError) becomes one line
    ``prog: error: ...`` on stderr and exit status 2, as under ``spd``."""
    try:
        return run(args)
    except InputError as exc:
        sys.stderr.write(f"{prog}: error: {exc}\n")
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
