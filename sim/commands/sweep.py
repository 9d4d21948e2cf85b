"""`spd sweep SCENARIO.json --stages 2,4,8,16 --alpha 0.5:0.95:0.05 --hop 0.01,0.05,0.1 -o out.csv`.

Evaluates every method of the scenario (or those picked with ``--methods``) over the Cartesian grid of
the axes given, vectorised with numpy (one ``predict_grid`` call per method, no Python loop per
point), and writes one CSV row per (method, grid point) atomically. An axis a method does not use
(e.g. ``--stages`` for eagle3) is not expanded for it. Axis values: ``a,b,c`` or ``start:stop:step``
(stop included). CSV columns: see ``COLUMNS`` and docs/closed-form.md.
"""
from __future__ import annotations

import csv
import io
import sys

import numpy as np

from ..errors import InputError

# option -> (Grid field, integer?, lower bound, upper bound)
AXES = {
    "alpha": ("alpha", False, 0.0, 1.0),
    "stages": ("stages", True, 1, None),
    "hop": ("hop_ms", False, 0.0, None),
    "draft_layers": ("draft_layers", True, 1, None),
    "steps": ("steps", True, 1, None),
    "gamma": ("gamma", True, 1, None),
    "tokens": ("tokens", True, 3, None),
}
# Fixed columns (empty where the method has no such parameter), then the results.
COLUMNS = ("name", "method", "stages", "draft_layers", "steps", "gamma", "alpha", "hop_ms", "tokens",
           "theoretical_speedup", "accept_length", "tokens_per_cycle", "cycle_ms", "tokens_per_s", "wallclock_speedup",
           "draft_hidden", "draft_slack_ms")


def add_arguments(p) -> None:
    p.add_argument("scenario", nargs="?", help="scenario JSON file (default: the embedded default scenario)")
    p.add_argument("--alpha", help="per-draft acceptance values, e.g. 0.5:0.95:0.05 (replaces the scenario's acceptance)")
    p.add_argument("--stages", help="pipeline stage counts, e.g. 2,4,8,16 (balanced splits)")
    p.add_argument("--hop", help="hidden-state hop times in ms, e.g. 0.01,0.05,0.1")
    p.add_argument("--draft-layers", dest="draft_layers", help="draft tower layers (spd, ppsd, eagle3)")
    p.add_argument("--steps", help="EAGLE-3 chain lengths m")
    p.add_argument("--gamma", help="vanilla SD draft lengths")
    p.add_argument("--tokens", help="finite generation length N for SPD/PPSD (default: steady state)")
    p.add_argument("--methods", help="comma-separated method names or display names to sweep (default: all)")
    p.add_argument("-o", "--output", required=True, help="CSV file to write ('-' for stdout)")


def parse_axis(text: str, option: str, integer: bool, lo, hi) -> np.ndarray:
    """``a,b,c`` or ``start:stop:step`` (stop included) -> sorted unique array; InputError naming the option."""
    try:
        if ":" in text:
            parts = [float(x) for x in text.split(":")]
            if len(parts) != 3 or parts[2] <= 0 or parts[1] < parts[0]:
                raise ValueError
            count = int(np.floor((parts[1] - parts[0]) / parts[2] + 1e-9)) + 1
            vals = np.round(parts[0] + parts[2] * np.arange(count), 12)
        else:
            vals = np.array([float(x) for x in text.split(",") if x.strip()])
    except ValueError:
        raise InputError(f"--{option}: expected a,b,c or start:stop:step with step > 0, got {text!r}") from None
    if vals.size == 0 or not np.all(np.isfinite(vals)):
        raise InputError(f"--{option}: no values in {text!r}")
    if integer:
        if not np.all(vals == np.round(vals)):
            raise InputError(f"--{option}: expected integers, got {text!r}")
        vals = vals.astype(int)
    if lo is not None and vals.min() < lo or hi is not None and vals.max() > hi:
        raise InputError(f"--{option}: values must lie in [{lo}, {hi if hi is not None else 'inf'}], got {text!r}")
    return np.unique(vals)


def sweep_method(scenario, spec, axes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One method over the Cartesian product of the axes it uses: flat columns of equal length."""
    from ..closed_form import predict_grid
    from ..methods import get_method

    method = get_method(spec.method)
    used = {k: v for k, v in axes.items() if k in method.grid_axes}
    if "stages" in used:  # drop stage counts the method cannot take (spd/ppsd need >= 2, none more than layers)
        lo = 1 if spec.method == "ar_pipeline" else 2
        keep = (used["stages"] >= lo) & (used["stages"] <= scenario.target.layers)
        if not keep.all():
            sys.stderr.write(f"spd sweep: note: {spec.name or method.label(spec)}: skipping stages {used['stages'][~keep].tolist()}\n")
        used["stages"] = used["stages"][keep]
        if used["stages"].size == 0:
            return {}
    names = list(used)
    mesh = np.meshgrid(*used.values(), indexing="ij") if used else []
    res = predict_grid(scenario, spec, **dict(zip(names, mesh)))
    size = int(np.prod([v.size for v in used.values()])) if used else 1
    cols = {k: np.asarray(v).reshape(-1) for k, v in res.items()}
    for k, m in zip(names, mesh):
        cols[k] = m.reshape(-1)
    fixed = {"stages": spec.stages, "draft_layers": spec.draft_layers, "steps": spec.steps, "gamma": spec.gamma}
    for k, v in fixed.items():
        if k not in cols and v is not None and (k != "draft_layers" or spec.method in ("spd", "ppsd", "eagle3")):
            cols[k] = np.full(size, v)
    if "hop_ms" in method.grid_axes and "hop_ms" not in cols and scenario.timing is not None:
        cols["hop_ms"] = np.full(size, scenario.timing.mean_ms("hop"))
    cols["name"] = np.full(size, spec.name or method.label(spec), dtype=object)
    cols["method"] = np.full(size, spec.method, dtype=object)
    return cols


def to_csv(blocks: list[dict[str, np.ndarray]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for cols in blocks:
        if not cols:
            continue
        n = len(cols["method"])
        columns = []
        for c in COLUMNS:
            v = cols.get(c)
            if v is None:
                columns.append([""] * n)
            elif v.dtype == bool:
                columns.append(["true" if x else "false" for x in v])
            elif v.dtype.kind == "f":
                columns.append([f"{x:.6g}" for x in v])
            else:
                columns.append([str(x) for x in v])
        w.writerows(zip(*columns))
    return buf.getvalue()


def run(args) -> int:
    from ..io import atomic_write_text
    from ..methods import get_method
    from ..scenario import load_scenario
    from .predict import default_scenario_path

    scenario = load_scenario(args.scenario or default_scenario_path())
    axes = {}
    for opt, (key, integer, lo, hi) in AXES.items():
        text = getattr(args, opt)
        if text is not None:
            axes[key] = parse_axis(text, opt.replace("_", "-"), integer, lo, hi)
    specs = list(scenario.methods)
    if args.methods:
        wanted = {x.strip() for x in args.methods.split(",") if x.strip()}
        specs = [s for s in specs if s.method in wanted or (s.name or get_method(s.method).label(s)) in wanted]
        if not specs:
            raise InputError(f"--methods: none of {sorted(wanted)} is in {scenario.source}")
    blocks = [sweep_method(scenario, s, axes) for s in specs]
    text = to_csv(blocks)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        atomic_write_text(args.output, text)
        rows = sum(len(b.get("method", ())) for b in blocks)
        print(f"wrote {rows} rows ({len(specs)} methods) to {args.output}")
    return 0
