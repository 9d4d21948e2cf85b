"""Closed-form sweep throughput: scenario-method evaluations per second on one core (goal >= 1,000,000/s).

An evaluation = one (method, grid point) with every output column (theoretical and wall-clock
speedup, tokens/s, cycle time, ...), computed through the same ``predict_grid`` path as
``spd sweep`` and the dashboard. Usage: ``.venv/bin/python benchmarks/closed_form_sweep.py [--points N]``.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core: numpy's elementwise kernels are single-threaded anyway

import argparse  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from sim.closed_form import predict_grid  # noqa: E402
from sim.commands.predict import default_scenario_path  # noqa: E402
from sim.scenario import load_scenario  # noqa: E402


def grid_for(method: str, points: int) -> dict[str, np.ndarray]:
    """An open mesh of about ``points`` points over the axes the method uses."""
    if method in ("spd", "ppsd"):
        n_alpha = points // (8 * 32)
        return {"alpha": np.linspace(0.3, 0.99, n_alpha)[:, None, None], "stages": np.array([2, 3, 4, 6, 8, 12, 16, 18])[None, :, None],
                "hop_ms": np.linspace(0.0, 0.5, 32)[None, None, :]}
    if method == "ar_pipeline":
        return {"stages": np.arange(1, 37)[:, None], "hop_ms": np.linspace(0.0, 0.5, max(points // 36, 1))[None, :]}
    if method == "eagle3":
        return {"alpha": np.linspace(0.3, 0.99, points // 15)[:, None], "steps": np.arange(1, 16)[None, :]}
    if method == "sd":
        return {"alpha": np.linspace(0.3, 0.99, points // 8)[:, None], "gamma": np.arange(1, 9)[None, :]}
    return {}


def dense_for(method: str, points: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``points`` independent random points (every axis a full-size array): no saving from an open mesh."""
    alpha = rng.uniform(0.3, 0.99, points)
    stages = rng.choice(np.array([2, 3, 4, 6, 8, 12, 16, 18]), points)
    hop = rng.uniform(0.0, 0.5, points)
    return {"spd": {"alpha": alpha, "stages": stages, "hop_ms": hop},
            "ppsd": {"alpha": alpha, "stages": stages, "hop_ms": hop},
            "ar_pipeline": {"stages": stages, "hop_ms": hop},
            "eagle3": {"alpha": alpha, "steps": rng.integers(1, 16, points)},
            "sd": {"alpha": alpha, "gamma": rng.integers(1, 9, points)}}.get(method, {})


def best_time(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--points", type=int, default=1_000_000, help="grid points per method")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    scen = load_scenario(default_scenario_path())
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, numpy {np.__version__}, one thread")
    rng = np.random.default_rng(0)
    specs = {}
    for spec in scen.methods:
        if spec.method != "ar":
            specs.setdefault(spec.method, spec)
    for mode in ("mesh", "dense"):
        print(f"-- {mode}: " + ("open mesh over the method's axes (what `spd sweep` builds)" if mode == "mesh"
                                else "independent random points, every input a full-size array (worst case)"))
        total_evals, total_s = 0, 0.0
        for method, spec in specs.items():
            axes = grid_for(method, args.points) if mode == "mesh" else dense_for(method, args.points, rng)
            size = int(np.prod(np.broadcast_shapes(*(a.shape for a in axes.values()))))
            t = best_time(lambda: predict_grid(scen, spec, **axes), args.repeat)
            total_evals += size
            total_s += t
            print(f"{method:12s} {size:>9,d} points  {t * 1e3:8.1f} ms  {size / t:>13,.0f} evaluations/s")
        print(f"{'all':12s} {total_evals:>9,d} points  {total_s * 1e3:8.1f} ms  {total_evals / total_s:>13,.0f} evaluations/s (goal >= 1,000,000)")
    # what the dashboard does per slider change: one chart of 4 stage counts x 200 alphas for SPD
    spd = next(s for s in scen.methods if s.method == "spd")
    t = best_time(lambda: predict_grid(scen, spd, alpha=np.linspace(0.3, 0.99, 200)[:, None], stages=np.array([2, 4, 8, 16])[None, :]), 20)
    print(f"dashboard-sized chart (spd, 200 alphas x 4 stage counts): {t * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
