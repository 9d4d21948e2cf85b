"""Fit a :class:`~sim.calibration.profile.Profile` from run measurements (scipy least squares).

The model (docs/calibration.md, "Fitting model"):

* stage forward of k layers, T = k * a(shape) + b, slowed on a shared device by the work that runs beside it
  (``StageModel``): ``T * (1 + kappa_m (stages on the device - 1)) + rho_m * min(W, T)`` where rank 0 is on the
  device (W: its draft in SPD, the whole forward otherwise), fitted with ``scipy.optimize.least_squares`` on
  the per-(run, stage) medians, relative residuals (so small and large stages weigh alike), one ``a`` per
  measured shape, shared ``b``, ``kappa_m`` / ``rho_m`` per method; then ``a(shape) = a0 + a1 * layer_mparams``
  across shapes (weighted linear least squares, a0, a1 >= 0) for shapes that were never measured. ``b`` is
  fixed at 0 with a single layer count, ``kappa`` when every device holds as many stages, ``rho`` when rank 0
  is beside every stage or none;
* controller costs (control, verify, draft) are linear in a few features (const, stages, head size,
  draft layers x rows) fitted with ``scipy.optimize.lsq_linear`` (coefficients >= 0) on per-run medians,
  after dividing out the contention factor of rank 0's device (``StageModel.rank0_factor``); a feature that does not vary in the
  data is dropped (its effect is absorbed by the constant); the verify of a cycle in which no token finished
  (``verify_fill``: no head) is a pooled distribution of its own;
* hops: per link type, the one-token latency distribution, plus a size slope when sizes vary;
* spreads: measured / per-run median, pooled, as distributions of ratios.
"""
from __future__ import annotations

import time
from collections import defaultdict

import numpy as np
from scipy.optimize import least_squares, lsq_linear

from ..errors import InputError
from .extract import ModelShape, RunMeasurement
from .profile import LINK_TYPES, PER_RANK, DeviceShare, Dist, LinearFit, MethodTerms, Profile, StageModel, draft_fit_key
from .untraced_contention import fit_untraced_contention, shares_stage_devices


def fit_linear(features: list[dict[str, float]], y: list[float], names: tuple[str, ...]) -> LinearFit:
    """Non-negative least squares y ~ X·coef over the named features; constant / collinear columns dropped."""
    if not y:
        return LinearFit({"const": 0.0}, 0.0, 0)
    X_all = np.array([[f.get(n, 1.0 if n == "const" else 0.0) for n in names] for f in features], dtype=float)
    yv = np.asarray(y, dtype=float)
    keep: list[int] = []
    for j, n in enumerate(names):
        col = X_all[:, j]
        if n != "const" and np.ptp(col) == 0:
            continue
        trial = keep + [j]
        if np.linalg.matrix_rank(X_all[:, trial]) == len(trial):
            keep = trial
    X = X_all[:, keep]
    if len(yv) < len(keep):  # fewer points than parameters: keep the constant only
        keep = [names.index("const")] if "const" in names else keep[:1]
        X = X_all[:, keep]
    res = lsq_linear(X, yv, bounds=(0.0, np.inf))
    pred = X @ res.x
    rmse = float(np.sqrt(np.mean((pred - yv) ** 2)))
    return LinearFit({names[j]: float(c) for j, c in zip(keep, res.x)}, rmse, len(yv))


def _med(x) -> float:
    return float(np.median(np.asarray(x, dtype=float)))


def fit_stage(runs: list[RunMeasurement]) -> StageModel:
    """The stage model (``StageModel``: per-shape layer time, shared per-stage constant, per method the slowdown
    by concurrent stages on the device and by rank 0's work beside it) from per-(run, stage) medians."""
    groups = defaultdict(list)
    for ri, r in enumerate(runs):
        for s in r.stage:
            groups[(ri, s.stage)].append(s)
    if not groups:
        raise InputError("calibrate: no stage forward events in the traces (need at least one ar_pipeline or spd run "
                         "traced with --trace full)")
    shapes = sorted({runs[ri].shape.key for ri, _ in groups})
    methods = sorted({r.method for r in runs})
    rows = []  # (shape index, layers, stages on device, rank 0 there, rank 0's concurrent work ms, median, count, method)
    ratios = []
    for (ri, _), ss in groups.items():
        r = runs[ri]
        ms = [s.ms for s in ss]
        med = _med(ms)
        # what rank 0 computes beside the stage: SPD drafts concurrently (its run's median draft); otherwise it
        # waits for the whole forward (nan: min(W, T) = T)
        busy = _med([d for _, d in r.draft]) if r.method == "spd" and r.draft else float("nan")
        rows.append((shapes.index(r.shape.key), ss[0].layers, ss[0].stages_on_device, float(ss[0].with_rank0), busy,
                     med, len(ms), methods.index(r.method)))
        if med > 0:
            ratios.extend(np.asarray(ms) / med)
    arr = np.array(rows, dtype=float)
    si, k, m_on, r0, busy, y, cnt, mi = arr.T
    fit_b = len(set(k.tolist())) > 1
    # kappa per method whose stages share a device with another stage, when the number of stages per device
    # varies; rho per method with a stage beside rank 0, when some stage is not (AR pipeline and SPD do different
    # things there); otherwise the per-layer times absorb them
    kidx = {m: j for j, m in enumerate(sorted({int(x) for x, mm in zip(mi, m_on) if mm > 1}))} \
        if len(set(m_on.tolist())) > 1 else {}
    ridx = {m: j for j, m in enumerate(sorted({int(x) for x, rr in zip(mi, r0) if rr > 0}))} \
        if len(set(r0.tolist())) > 1 else {}
    # kappa's growth with the weight-streaming rate, per method whose shared stages cover several shapes
    bidx = {m: j for j, m in enumerate(m for m in sorted(kidx)
                                       if len({int(x) for x in si[(mi == m) & (m_on > 1)]}) > 1)}
    nk, nr, nb = len(kidx), len(ridx), len(bidx)
    shape_mp = {shapes.index(r.shape.key): r.shape.layer_mparams for r in runs}
    mparams = np.array([shape_mp[int(j)] for j in si])
    w = np.sqrt(cnt)

    def unpack(p):
        a = p[:len(shapes)]
        b = p[len(shapes)] if fit_b else 0.0
        o = len(shapes) + int(fit_b)
        return (a, b, np.asarray(p[o:o + nk], dtype=float), np.asarray(p[o + nk:o + nk + nr], dtype=float),
                np.asarray(p[o + nk + nr:o + nk + nr + nb], dtype=float))

    def per_row(vals, idx):
        return np.array([vals[idx[int(m)]] if int(m) in idx else 0.0 for m in mi])

    def model(p):
        a, b, kap, rho, kbw = unpack(p)
        al = a[si.astype(int)]
        t = k * al + b
        tbps = 2.0 * mparams / np.maximum(al, 1e-9) / 1000.0  # StageModel.stream_tbps
        w0 = np.where(np.isnan(busy), t, np.minimum(busy, t))
        kappa = per_row(kap, kidx) + per_row(kbw, bidx) * tbps
        return t * (1.0 + kappa * (m_on - 1.0)) + per_row(rho, ridx) * r0 * w0

    x0 = [max(_med(y[si == j] / k[si == j]), 1e-6) for j in range(len(shapes))] + [0.0] * (int(fit_b) + nk + nr + nb)
    sol = least_squares(lambda p: w * (model(p) - y) / y, x0, bounds=(0.0, np.inf))
    a, b, kaps, rhos, kbws = unpack(sol.x)
    kappa_by = {methods[m]: float(kaps[j]) for m, j in kidx.items()}
    rho_by = {methods[m]: float(rhos[j]) for m, j in ridx.items()}
    kbw_by = {methods[m]: float(kbws[j]) for m, j in bidx.items()}

    def pooled(by: dict[str, float], mask) -> float:  # forward-weighted mean, for methods not measured
        c = {methods[m]: float(cnt[(mi == m) & mask].sum()) for m in range(len(methods))}
        tot = sum(c[m] for m in by)
        return sum(v * c[m] for m, v in by.items()) / tot if tot > 0 else 0.0

    rmse = float(np.sqrt(np.mean((model(sol.x) - y) ** 2)))
    # a(shape) across widths: a = a0 + a1 * layer_mparams (weighted by forwards measured)
    params = {key: next(rr.shape for rr in runs if rr.shape.key == key).layer_mparams for key in shapes}
    feats = [{"const": 1.0, "layer_mparams": params[key]} for key in shapes]
    line = fit_linear(feats, list(a), ("const", "layer_mparams"))
    return StageModel(a0_ms=line.coef.get("const", 0.0), a1_ms_per_mparam=line.coef.get("layer_mparams", 0.0),
                      b_ms=float(b), kappa=pooled(kappa_by, m_on > 1), kappa_by_method=kappa_by,
                      rank0_overlap_by_method=rho_by, rank0_overlap=pooled(rho_by, r0 > 0), kappa_bw_by_method=kbw_by,
                      per_shape_layer_ms={key: float(v) for key, v in zip(shapes, a)},
                      spread=Dist.of(ratios), rmse_ms=rmse, points=len(rows))


def _cost_features(r: RunMeasurement) -> dict[str, float]:
    """What the controller's fixed costs are fitted on: a constant, the stage count, the head's size, and the
    stages that sent rank 0 their output (one receive each per cycle)."""
    return {"const": 1.0, "stages": float(r.n), "head_mparams": r.shape.head_mparams,
            "reports": float(len(r.reporting) or r.n)}


def _rank0_contention(stage: StageModel, r: RunMeasurement) -> float:
    return stage.rank0_factor(DeviceShare(r.stages_on_device(0), True), r.method,
                              stage.stream_tbps(r.shape.key, r.shape.layer_mparams))


def _link_dists(runs: list[RunMeasurement], net: bool = False) -> tuple[dict[str, Dist], dict[str, float]]:
    """Per link type: the one-token hop latency distribution and the size slope (ms per KiB). ``net``:
    latencies counted from the end of a hidden state's sender-side send (RunMeasurement.net_hops)."""
    hops: dict[str, Dist] = {}
    slopes: dict[str, float] = {}
    for lt in LINK_TYPES:
        hs = [(b, ms) for r in runs for (t, b, ms) in (r.net_hops if net else r.hops) if t == lt]
        if not hs:
            continue
        sizes = np.array([b for b, _ in hs], dtype=float)
        lat = np.array([ms for _, ms in hs], dtype=float)
        small = sizes == sizes.min()
        hops[lt] = Dist.of(lat[small])
        slopes[lt] = 0.0
        if np.ptp(sizes) > 0:
            lin = fit_linear([{"const": 1.0, "kb": s / 1024.0} for s in sizes], list(lat), ("const", "kb"))
            slopes[lt] = lin.coef.get("kb", 0.0)
    return hops, slopes


# rank 0 receives one output per reporting stage per cycle (after the head, which needs only the last one)
VERIFY_FEATURES = ("const", "head_mparams", "reports")
# the draft: a constant, per tower layer, per layer and row, and per layer the target's layer size (an untrained or
# replayed PDM's tower layers have the target's width; a trained PDM serves one model, where it is constant)
DRAFT_FEATURES = ("const", "draft_layers", "draft_layer_rows", "draft_layer_mparams")


def _add_draft_points(r: RunMeasurement, c0: float, draft_f: dict, draft_y: dict, ratios: list) -> None:
    """A run's draft forwards as fit points: per row count, its median with rank 0's contention ``c0`` divided out."""
    src = draft_fit_key(r.draft_source, r.shape.name)
    by_rows = defaultdict(list)
    for rows, ms in r.draft:
        by_rows[rows].append(ms)
    for rows, ms in by_rows.items():
        med = _med(ms)
        draft_f[src].append({"const": 1.0, "draft_layers": float(r.draft_layers),
                             "draft_layer_rows": float(r.draft_layers * rows),
                             "draft_layer_mparams": float(r.draft_layers * r.shape.layer_mparams)})
        draft_y[src].append(med / c0)
        if med > 0:
            ratios.extend(np.asarray(ms) / med)


def rank0_cost_runs(pipe: list[RunMeasurement]) -> list[RunMeasurement]:
    """The runs rank 0's fixed costs (control, verify, head, draft) are fitted on: those with a device per stage
    where the set has any. A run with stages sharing a device carries contention in them that the rank-0 factor
    does not divide out: with session 11's 2x H100 shared runs in the fit, the slopes of control and verify over
    the stage count grew (shared runs were the n=3/4 ones) and 4-GPU forecasts went 5-12% slow."""
    return [r for r in pipe if not shares_stage_devices(r)] or pipe


def _verify_points(runs: list[RunMeasurement], stage: StageModel) -> tuple[list[dict[str, float]], list[float]]:
    """What rank 0's verify is fitted on (pooled and per method): per run with verify samples, its cost
    features and its median (older, legacy-contention profiles: with rank 0's contention divided out)."""
    vr = [r for r in runs if r.verify_ms]
    if stage.concurrent:  # verify runs once the stages are done: nothing computes beside it
        return [_cost_features(r) for r in vr], [_med(r.verify_ms) for r in vr]
    return [_cost_features(r) for r in vr], [_med(r.verify_ms) / _rank0_contention(stage, r) for r in vr]


def fit_by_method(pipe: list[RunMeasurement], stage: StageModel) -> dict[str, MethodTerms]:
    """The terms that depend on what the controller does while the stages work, per pipeline method:
    control delivery + input receive, the sender-side send and the hop latency per link type. On a GPU
    shared by the controller and stage 1 (separate processes, time-sliced), the AR pipeline's controller
    waits in a posted NCCL receive while stage 1 computes and sends, SPD's controller runs the draft:
    the same link costs differ by several x (docs/perf-notes.md), so a pooled value fits neither."""
    out: dict[str, MethodTerms] = {}
    solo = rank0_cost_runs(pipe)
    for method in sorted({r.method for r in pipe}):
        rs = [r for r in pipe if r.method == method]
        hops, _ = _link_dists(rs, net=True)
        ch = [x for r in rs for x in r.control_hop_ms]
        # AR pipeline only: rank 0 waits idle, so stage 1's wake-up is on the critical path (~0.4 ms after the
        # cycle start on 2x H200, whatever the broadcast). Fitted for SPD too, it made the 4-GPU forecast worse
        # (session 5: full-trace max 5.6% -> 8.7%): there the draft runs meanwhile.
        late = [x for r in rs for x in r.stage1_late_start_ms] if method == "ar_pipeline" else []
        # rank 0's own costs, its receives of the stages' outputs and the stages' late start: from the runs with a
        # device per stage where there are any (``rank0_cost_runs``); a report over a link type that only shared
        # runs have (same_device between two stages) from those
        costed = [r for r in solo if r.method == method] or rs
        starts = [x for r in costed for x in r.stage_start_ms]
        reports = {}
        for lt in LINK_TYPES:
            src = next((g for g in (costed, rs) if any(t == lt for r in g for t, _ in r.report_ms)), None)
            if src is not None:
                reports[lt] = Dist.of([x for r in src for t, x in r.report_ms if t == lt])
        hr = [r for r in costed if r.head_ms]
        head = fit_linear([_cost_features(r) for r in hr], [_med(r.head_ms) / _rank0_contention(stage, r) for r in hr],
                          ("const", "head_mparams")) if hr else None
        sd = [x for r in rs for x in r.send_ms]
        co = [x for r in rs for x in r.collect_ms]
        ver_f, ver_y = _verify_points(costed, stage)
        verify = fit_linear(ver_f, ver_y, VERIFY_FEATURES) if ver_y else None
        out[method] = MethodTerms(control_hop=Dist.of(ch) if ch else None, send_ms=Dist.of(sd) if sd else None,
                                  hops=hops, collect=Dist.of(co) if co else None, runs=len(rs), verify=verify,
                                  stage1_start_floor=Dist.of(late) if len(late) >= MIN_CYCLES_PER_EVENT else None,
                                  stage_start=Dist.of(starts) if len(starts) >= MIN_CYCLES_PER_EVENT else None,
                                  report=reports,
                                  head=head)
    return out


MIN_CYCLES_PER_EVENT = 10  # fewer cycles of an event in a run: its median is too noisy for the trace overhead


TWIN_WINDOW_S = 1800.0  # a full trace and its cycle-level twin: one lease of one machine (at most 30 min held)


def fit_trace_overhead(runs: list[RunMeasurement]) -> tuple[dict[str, dict[str, float]], int]:
    """How much ``--trace full`` lengthens a pipeline cycle (its recorder synchronises the stream at every
    event), per method and cycle event: the median, over the configurations measured at both trace levels, of
    (the full trace's median cycle - the cycle-level twin's median cycle), in ms. Returns it and the number
    of twin pairs it comes from ({} and 0 when the set has no cycle-level twin).

    The AR pipeline's is stored per rank on its serial path (event ``ar_per_rank``: the delta over n + 1, the
    controller and n stages): one token passes every rank in turn, each rank's synchronising recorder adds its
    cost to the token, so the overhead grows with n (full - cycle ms per token, n=4 over n=2: 1.69 on 4x H100,
    1.75 on 4x H200; (n + 1) gives 5/3 = 1.67). It is the difference of the means, as tokens/s sees it: the
    recorder's synchronisations also lengthen the tail of the pipeline's cycles, and the medians' difference
    (0.42 ms at n=2 on H100, against 0.65 ms per token) left an n=4 prediction 9-12% slow. SPD's stages overlap,
    its overhead does not grow with n, and it keeps the medians' difference per cycle event (the means' moved no
    committed set's error beyond its noise; docs/calibration.md, session 10)."""
    # default-control runs only: a speculative-control twin pair measures another protocol's overhead
    runs = [r for r in runs if r.control == "after_verify"]
    full = [r for r in runs if r.method != "ar" and r.trace_level == "full"]
    deltas: dict[tuple[str, str], list[float]] = defaultdict(list)
    pairs = 0
    for r in runs:
        # stages sharing a device: tracing changes their contention too, which untraced_contention.py fits instead
        if r.method == "ar" or r.trace_level == "full" or shares_stage_devices(r):
            continue
        twin = _session_twin(r, full)
        if twin is None:
            continue
        pairs += 1
        for event, xs in r.cycle_ms.items():
            ys = twin.cycle_ms.get(event, [])
            if len(xs) >= MIN_CYCLES_PER_EVENT and len(ys) >= MIN_CYCLES_PER_EVENT:
                if r.method == "ar_pipeline":
                    deltas[(r.method, event + PER_RANK)].append((float(np.mean(ys)) - float(np.mean(xs))) / (r.n + 1))
                else:
                    deltas[(r.method, event)].append(_med(ys) - _med(xs))
    out: dict[str, dict[str, float]] = {}
    for (method, event), ds in sorted(deltas.items()):
        out.setdefault(method, {})[event] = float(np.median(ds))
    return out, pairs


def _session_twin(run: RunMeasurement, full: list[RunMeasurement]) -> RunMeasurement | None:
    """The full trace of ``run``'s configuration recorded in the same session (within ``TWIN_WINDOW_S``; the
    nearest in time), or None: the same configuration measured on another day, maybe another host of the same
    name, differs by more than its tracing (session 11: a 4x H100 set's runs paired with another host's full
    traces put every leave-one-out forecast of it 8-13% slow). Runs without a start time pair as before."""
    same = [f for f in full if f.config_key == run.config_key]
    if run.created_unix_s is None:
        return same[-1] if same else None
    near = [f for f in same if f.created_unix_s is None or abs(f.created_unix_s - run.created_unix_s) <= TWIN_WINDOW_S]
    return min(near, key=lambda f: abs((f.created_unix_s or run.created_unix_s) - run.created_unix_s), default=None)


def fit_profile(runs: list[RunMeasurement], notes: list[str] | None = None) -> Profile:
    """The profile of a set of runs (all from one machine: their environments are merged, differences noted).
    Cycle-level pipeline runs are not fitted term by term: those with a full-trace twin give the trace overhead,
    those with stages sharing a device the uninstrumented contention (through the simulator, last)."""
    if not runs:
        raise InputError("calibrate: no runs given")
    given = runs
    variants = sorted({r.runtime for r in runs})
    if any(not a.same_variant(b) for a in runs for b in runs):
        raise InputError(f"calibrate: the runs mix executor variants ({'; '.join(variants)}): a profile describes "
                         "one (kernels, process layout, draft graphs); calibrate each variant's runs separately")
    trace_overhead, twin_pairs = fit_trace_overhead(runs)
    runs = [r for r in runs if r.fittable]
    if not runs:
        raise InputError("calibrate: only cycle-level traces given: calibration needs per-op events (--trace full)")
    pipe = [r for r in runs if r.method != "ar"]
    stage = fit_stage(pipe)
    notes = list(notes or [])

    # single-device AR step: L x layer + extra(head)
    ar_feats, ar_y, ar_ratios = [], [], []
    ar_steps: dict[str, list[float]] = defaultdict(list)
    for r in runs:
        if r.method == "ar" and r.ar_step_ms:
            base = r.shape.layers * stage.layer_ms(r.shape.key, r.shape.layer_mparams)
            m = float(np.mean(r.ar_step_ms))
            ar_steps[r.shape.key].append(r.decode_ms / r.decode_tokens)  # per token, as its tokens/s measure it
            ar_feats.append({"const": 1.0, "head_mparams": r.shape.head_mparams})
            ar_y.append(max(m - base, 0.0))
            ar_ratios.extend(np.asarray(r.ar_step_ms) / m)

    # controller costs, per run medians with rank 0's contention divided out (verify: only in legacy profiles)
    ctrl_f, ctrl_y, cost_ratios, fill_y = [], [], [], []
    draft_f: dict[str, list] = defaultdict(list)
    draft_y: dict[str, list] = defaultdict(list)
    draft_ratios = []
    costed = rank0_cost_runs(pipe)
    costed_ids = {id(r) for r in costed}
    solo_sources = {draft_fit_key(r.draft_source, r.shape.name) for r in costed if r.draft and r.draft_source}
    for r in pipe:
        c0 = _rank0_contention(stage, r)
        f = _cost_features(r)
        if id(r) not in costed_ids:  # its draft only where no run of the source had a device per stage
            if r.draft and r.draft_source and draft_fit_key(r.draft_source, r.shape.name) not in solo_sources:
                _add_draft_points(r, c0, draft_f, draft_y, draft_ratios)
            continue
        if r.control_ms:
            ctrl_f.append(f)
            ctrl_y.append(_med(r.control_ms) / c0)
        fill_y.extend(np.asarray(r.verify_fill_ms) / (1.0 if stage.concurrent else c0))
        if r.verify_ms:
            m = _med(r.verify_ms)
            if m > 0:
                cost_ratios.extend(np.asarray(r.verify_ms) / m)
        if r.draft and r.draft_source:
            _add_draft_points(r, c0, draft_f, draft_y, draft_ratios)

    hops, slopes = _link_dists(pipe)
    if not hops:
        raise InputError("calibrate: no matched hidden-state sends/receives in the traces (need --trace full pipeline runs)")

    flush = [r.flush_ms for r in pipe if r.flush_ms is not None]
    envs = [r.environment for r in runs]
    env = dict(envs[0])
    for e in envs[1:]:
        for k, v in e.items():
            if k in ("torch", "cuda", "driver", "device_names") and env.get(k) != v:
                notes.append(f"traces disagree on environment {k}: {env.get(k)!r} vs {v!r}")
    if not ar_y:
        notes.append("no single-device AR run: the AR step's non-layer part (embedding, head, sampling) is taken "
                     "from the verify fit")
    shapes = {r.shape.key: r.shape.to_json() for r in runs}
    ver_f, ver_y = _verify_points(costed, stage)
    ar_extra = fit_linear(ar_feats, ar_y, ("const", "head_mparams")) if ar_y else \
        fit_linear(ver_f, ver_y, ("const", "head_mparams"))
    prof = Profile(
        environment=env, stage=stage, ar_extra=ar_extra, ar_spread=Dist.of(ar_ratios) if ar_ratios else Dist(1.0),
        draft={src: fit_linear(draft_f[src], draft_y[src], DRAFT_FEATURES) for src in draft_f},
        draft_spread=Dist.of(draft_ratios) if draft_ratios else Dist(1.0), hops=hops, hop_ms_per_kb=slopes,
        control=fit_linear(ctrl_f, ctrl_y, ("const", "stages")),
        control_hop=Dist.of([x for r in pipe for x in r.control_hop_ms]),
        send_ms=Dist.of([x for r in pipe for x in r.send_ms]),
        verify=fit_linear(ver_f, ver_y, VERIFY_FEATURES),
        bookkeeping=Dist.of([x for r in pipe for x in r.bookkeeping_ms]),
        flush=Dist.of(flush) if flush else Dist(0.0), cost_spread=Dist.of(cost_ratios) if cost_ratios else Dist(1.0),
        by_method=fit_by_method(pipe, stage), verify_fill=Dist.of(fill_y) if fill_y else None,
        trace_overhead_ms=trace_overhead, ar_step_ms_by_shape={k: float(np.mean(v)) for k, v in sorted(ar_steps.items())},
        source={"traces": [r.path for r in runs], "configurations": sorted({r.config_key for r in runs}),
                "trace_overhead_pairs": twin_pairs,
                "variants": [dict(t) for t in sorted({tuple(r.variant().items()) for r in runs})],
                "shapes": shapes, "created_unix_s": time.time(), "notes": notes},
    )
    prof, fits = fit_untraced_contention(prof, given)
    if fits:
        prof.source["untraced_contention"] = [
            {"configuration": f.label, "method": f.method, "runs": f.runs, "c_per_ms": round(f.c_per_ms, 4), "capped": f.capped,
             "forward_alone_ms": [round(t, 4) for t in f.forward_alone_ms]} for f in fits]
    return prof


def shape_lookup(profile: Profile, name: str | None, hidden_size: int | None, layers: int) -> ModelShape | None:
    """A shape the profile has measured, by name (and width when given)."""
    for d in (profile.source.get("shapes") or {}).values():
        try:
            s = ModelShape(**d)
        except TypeError:
            continue
        if name and s.name.lower() == name.lower() and (hidden_size is None or s.hidden_size == hidden_size):
            return s
    return None
