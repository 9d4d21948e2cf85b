"""A profile + a model shape + methods -> scenarios the closed form and the simulator run unchanged.

One scenario per method: the draft time is ``c + L_s·(u + w·rows + v·P)`` (a constant that
``timing_ms.draft_layer`` alone cannot express for several L_s at once) and the fixed costs depend on n,
so each method gets the timing section of its own configuration. Mapping (docs/calibration.md):

* ``stage_forward_ms[s]`` = fitted forward of stage s's layers, slowed by what computes beside it on its device
  (``StageModel``), plus the sender-side cost of its send to the next stage where that precedes what it sends
  rank 0 (AR pipeline; stages without a measured report);
* :class:`sim.des.CycleCosts` for the simulator: control, control_hop, verify, verify_fill, bookkeeping, flush;
  ``stage_start`` (SPD stages 2..n wait after their GO), ``report_hop`` (a stage's forward end -> rank 0 has its
  output), ``report_stages`` (SPD: the anchor stages and the last), ``head`` (verify's part that needs only the
  last stage's output) and ``credit`` (the trace overhead the serial costs could not absorb);
* ``timing_ms.verify`` = verify (+ the last stage's report beyond the hop), ``timing_ms.cycle_overhead`` =
  control + control hop + bookkeeping (+ the later start of stages 2..n): the closed form has one path;
* links: ``topology.hop_intra_node`` / ``hop_inter_node`` from the link types. When ranks share a
  device, devices are renumbered so that "same node" means "same device" (``devices_per_node`` = ranks):
  ``hop_intra_node`` is then the same-device hop and ``hop_inter_node`` the cross-device one;
* ``timing_ms.ar_token`` = the measured AR step of the shape, else L x layer + the AR extra.
Spread: ``"lognormal"`` (fitted CV), ``"empirical"`` (measured ratio quantiles x mean) or ``"constant"``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..des.latency import TimeSpec
from ..des.plan import CycleCosts
from ..errors import InputError
from ..scenario import Acceptance, Latency, MethodSpec, Scenario, balanced_split, parse_scenario
from .extract import ModelShape, link_type_of
from .fit import shape_lookup
from .profile import PER_RANK, DeviceShare, Dist, Profile, StageModel, resolve_draft_source, same_dims_key
from .untraced_contention import METHODS as CONCURRENT_STAGE_METHODS

SPREADS = ("lognormal", "empirical", "constant")
PIPELINE_METHODS = ("ar_pipeline", "spd", "ppsd", "spd_speculative")
# a method whose runs are never fitted takes another's fitted cost terms: SPD with speculative control has
# SPD's (the same ranks do the same work; only how it combines into a cycle differs)
COST_TERMS_OF = {"spd_speculative": "spd"}


@dataclass(frozen=True)
class Calibrated:
    """One method's scenario (single-method), the simulator's cost override, and the assumptions made."""

    scenario: Scenario
    costs: CycleCosts
    notes: tuple[str, ...]


def _lat(mean_ms: float, spread: Dist, kind: str) -> dict | float:
    if kind == "constant" or spread.cv == 0.0 or mean_ms == 0.0:
        return float(mean_ms)
    if kind == "empirical" and spread.samples_ms:
        m = sum(spread.samples_ms) / len(spread.samples_ms)
        return {"dist": "empirical", "samples": [mean_ms * s / m for s in spread.samples_ms]}
    return {"dist": "lognormal", "mean": float(mean_ms), "cv": float(spread.cv)}


def _ratio(d: Dist) -> Dist:
    """A distribution of measured values as a spread of ratios around 1."""
    return Dist(1.0, d.cv, tuple(s / d.mean_ms for s in d.samples_ms) if d.mean_ms > 0 else ())


def resolve_shape(profile: Profile, layers: int, name: str | None, hidden_size: int | None,
                  shape: ModelShape | None = None) -> tuple[ModelShape, list[str]]:
    if shape is not None:
        return shape, []
    found = shape_lookup(profile, name, hidden_size, layers)
    if found is not None:
        return replace(found, layers=layers), []
    if hidden_size is None:
        what = f"has not measured a model named {name!r}" if name else "cannot tell the target's shape (no target.name)"
        raise InputError(f"target: the profile {what}; give target.hidden_size "
                         "(or a measured target.name) so layer times can be scaled")
    d = hidden_size  # a Llama-like layer: GQA 4:1, FFN ~ 3.5 d, head_dim 128, 128k vocabulary
    heads = max(d // 128, 1)
    est = ModelShape(name or "unknown", layers, d, int(3.5 * d), heads, max(heads // 4, 1), 128, 128256)
    return est, [f"shape of {name or 'target'} estimated from hidden_size={d} (Llama-like: FFN 3.5d, GQA 4:1, "
                 f"128k vocabulary): {est.layer_mparams:.1f} M params/layer"]


def _devices(n: int, method: str, placement: tuple[str, ...] | None) -> tuple[list[int], int, bool]:
    """Device ints per rank, devices_per_node, and whether ranks share devices (see the module doc)."""
    world = 1 if method in ("ar", "sd", "eagle3") else n + 1
    if placement is None:
        return list(range(world)), 1_000_000, False
    names = list(dict.fromkeys(placement))
    phys = [names.index(p) for p in placement]
    if len(set(phys)) == len(phys):
        hosts = [p.split("/")[0] for p in placement]
        if len(set(hosts)) > 1:  # one device per rank across hosts: number devices host by host
            per = max(hosts.count(h) for h in set(hosts))
            host_ids = list(dict.fromkeys(hosts))
            idx = {h: 0 for h in host_ids}
            out = []
            for h in hosts:
                out.append(host_ids.index(h) * per + idx[h])
                idx[h] += 1
            return out, per, False
        return phys, 1_000_000, False
    return [p * world + r for r, p in enumerate(phys)], world, True


def _contention_notes(st: StageModel, method: str, shape: ModelShape, split: tuple[int, ...], share: list[DeviceShare],
                      untraced: bool) -> list[str]:
    """What a prediction with stages sharing a device rests on: nothing (the profile saw no shared device), the
    full traces' kappa (which over-states an uninstrumented run's contention), or the uninstrumented c x T,
    extrapolated where a forward is outside the range it was fitted on."""
    if method not in CONCURRENT_STAGE_METHODS or not any(d.stages > 1 for d in share[1:]):
        return []
    if untraced and method in st.untraced_kappa_per_ms_by_method:
        c = st.untraced_kappa_per_ms_by_method[method]
        lo, hi = st.untraced_forward_range_ms.get(method, [0.0, float("inf")])
        ts = [st.alone_ms(k, shape.key, shape.layer_mparams) for k, d in zip(split, share[1:]) if d.stages > 1]
        out = [f"stages sharing a device: uninstrumented contention kappa = {c:.3f}/ms x the forward's time alone "
               f"({', '.join(f'{t:.2f}' for t in ts)} ms)"]
        if any(t < 0.9 * lo or t > 1.1 * hi for t in ts):
            out.append(f"stages sharing a device: a forward outside the {lo:.2f}-{hi:.2f} ms that the uninstrumented "
                       "contention was fitted on (extrapolated)")
        return out
    if not st.kappa_by_method.get(method) and not st.kappa_bw_by_method.get(method):
        return ["stages sharing a device, but the profile has no run with stages sharing one: contention is not "
                "modelled (each stage is predicted as if it had the device to itself)"]
    if untraced:
        return ["stages sharing a device: contention from full traces, which over-state an uninstrumented run's "
                "(on 2x H100 such runs ran 2-12% faster than this predicts); calibrate with cycle-level runs of "
                "shared devices too (docs/calibration.md, session 11)"]
    return []


def calibrated_method(profile: Profile, shape: ModelShape, method: str, *, stages: int | None = None,
                      draft_layers: int | None = None, split: tuple[int, ...] | None = None,
                      placement: tuple[str, ...] | None = None, draft_source: str | None = None,
                      acceptance: Acceptance | None = None, spread: str = "lognormal", name: str = "",
                      extra: dict | None = None, untraced: bool = True) -> Calibrated:
    """A single-method scenario with the profile's timings. ``placement``: a device label per rank
    (controller first; labels "host/device"); default one device per rank on one host. ``untraced``: predict
    a run without per-op tracing (the profile's trace overhead taken off, where it has one); False for a run
    recorded with ``--trace full``, whose timings the profile's terms describe as they are."""
    if spread not in SPREADS:
        raise InputError(f"--spread: expected one of {', '.join(SPREADS)}, got {spread!r}")
    notes: list[str] = []
    st = profile.stage
    fm = COST_TERMS_OF.get(method, method)  # whose fitted terms this method's scenario takes
    pipeline = method in PIPELINE_METHODS
    n = int(stages or 1)
    split = tuple(split) if split else balanced_split(shape.layers, n)
    devs, per_node, shared = _devices(n, method, placement)
    labels = placement or tuple(f"node/dev{i}" for i in range(len(devs)))  # no placement: a device each, one host
    # who computes on each rank's physical device: the stages there, and whether rank 0 is
    share = [DeviceShare(sum(1 for lab2 in labels[1:] if lab2 == lab), lab == labels[0]) for lab in labels]
    # the stages on rank 0's device, as long as the longest of them alone (an uninstrumented run's contention)
    t0 = max((st.alone_ms(k, shape.key, shape.layer_mparams) for k, lab in zip(split, labels[1:]) if lab == labels[0]),
             default=None) if untraced and method in PIPELINE_METHODS else None
    c0 = st.rank0_factor(share[0], fm, st.stream_tbps(shape.key, shape.layer_mparams), t0)
    layer_ms = st.layer_ms(shape.key, shape.layer_mparams)
    twin = st.measured_key(shape.key)
    if twin != shape.key:
        notes.append(f"{shape.name}: per-layer time of the measured shape {twin.split(':', 1)[0]} (same dimensions) "
                     f"= {layer_ms:.4f} ms" if twin else f"{shape.name}: per-layer time from the cross-width fit "
                     f"a0 + a1 x {shape.layer_mparams:.2f} M params = {layer_ms:.4f} ms (shape not measured)")
    ar_key = same_dims_key(shape.key, profile.ar_step_ms_by_shape)
    if ar_key is not None:  # a measured shape's AR step as measured (the fitted line misses small shapes by ~9%)
        ar_ms = profile.ar_step_ms_by_shape[ar_key]
        notes.append(f"{shape.name}: single-device AR step as measured for {ar_key.split(':', 1)[0]} = {ar_ms:.4f} ms")
    else:
        ar_ms = shape.layers * layer_ms + profile.ar_extra(const=1.0, head_mparams=shape.head_mparams)
    timing: dict = {"layer": layer_ms, "ar_token": _lat(ar_ms, profile.ar_spread, spread), "stage_overhead": 0.0}
    m: dict = {"method": method, "name": name or method}
    cost = {k: 0.0 for k in ("control", "control_hop", "verify", "bookkeeping", "flush")}
    overhead: dict[str, float] = {}
    topo, reporting, stage_start, report_hop = None, None, None, None
    mt = profile.by_method.get(fm)  # the terms fitted for this method (None: pooled ones only)
    if pipeline:
        # which stages send rank 0 their output (session-8 profiles; older ones: every stage, as they were fitted)
        reporting = None if not st.concurrent else anchor_stages(shape.layers, split) if fm == "spd" else (
            (n,) if fm == "ar_pipeline" else None)
        feats = {"const": 1.0, "stages": float(n), "head_mparams": shape.head_mparams,
                 "reports": float(len(reporting) if reporting else n)}
        cost["control"] = profile.control(**feats) * c0
        # (verify runs once the stages are done; older profiles divided rank 0's contention out of it too)
        cv = 1.0 if st.concurrent else c0
        cost["verify"] = (mt.verify if mt is not None and mt.verify is not None else profile.verify)(**feats) * cv
        ctrl_hop, send_d, hops = profile.terms(fm)
        cost["control_hop"] = ctrl_hop.mean_ms
        if mt is not None and mt.stage1_start_floor is not None:  # stage 1 starts at max(broadcast, floor)
            cost["control_hop"] = max(mt.stage1_start_floor.mean_ms - cost["control"], 0.0)
        chop0 = cost["control_hop"]  # before the trace overhead comes off: stage 1's wake-up as traced
        cost["bookkeeping"] = profile.bookkeeping.mean_ms
        cost["flush"] = profile.flush.mean_ms if fm != "ar_pipeline" else 0.0
        overhead = trace_overhead_ms(profile, fm, n) if untraced else {}
        before = dict(cost)
        if overhead:
            steady = overhead.get("ar" if fm == "ar_pipeline" else "accept", 0.0)
            _take_off(cost, ("verify", "control", "control_hop"), steady)
            _take_off(cost, ("flush",), overhead.get("reject", steady) - steady)
            notes.append(f"uninstrumented run: the trace overhead measured on full/cycle-level twins taken off rank "
                         f"0's serial costs ({', '.join(f'{e} {x:.3f}' for e, x in sorted(overhead.items()))} ms per cycle)")
        send = send_d.mean_ms
        d_ms, ls, collect = None, int(draft_layers or 1), 0.0
        if fm in ("spd", "ppsd"):
            d_ms, note = _draft_ms(profile, shape, draft_source, ls, n + 1, c0)  # rows: the completed token + n in flight
            if note:
                notes.append(note)
            if fm == "spd" and mt is not None and mt.collect is not None:
                # rank 0 receives the already-sent outputs only after its draft: a cost of the draft's path, which
                # sets the cycle only when the draft outlasts the stages (charged to verify, it was paid in the
                # stage-bound cycles too, where that receive is part of the last hop). Older profiles were fitted
                # with it in verify and keep it there.
                if st.concurrent:
                    collect = mt.collect.mean_ms
                else:
                    cost["verify"] += mt.collect.mean_ms
        if shared:
            intra, inter = hops.get("same_device"), hops.get("intra_node")
        else:
            intra, inter = hops.get("intra_node"), hops.get("inter_node")
        fallback = next(iter(hops.values()))
        if intra is None or inter is None:
            used = [k for k, v in hops.items() if v is fallback][0]
            notes.append(f"a link type was not measured; its hop uses the {used} latency ({fallback.mean_ms:.4f} ms)")
        intra, inter = intra or fallback, inter or intra or fallback
        # stages 2..n start later after the broadcast than stage 1 (control delivery to their thread or process,
        # the receive of their input): the simulator starts every stage control_hop after the broadcast, so the
        # difference is charged to their forward (it delays everything they send by as much)
        late = max(mt.stage_start.mean_ms - chop0, 0.0) if mt is not None and mt.stage_start is not None else 0.0
        report = [_report_ms(mt, labels, s + 1, reporting) for s in range(n)]
        # beside a stage on its device, rank 0 drafts (SPD: concurrently) or waits for the whole forward
        busy = d_ms if fm == "spd" else None
        notes += _contention_notes(st, fm, shape, split, share, untraced)
        fwd = []
        for s, k in enumerate(split):
            f = st.forward_ms(k, shape.key, shape.layer_mparams, share[s + 1], fm, busy, untraced=untraced)
            if s < n - 1 and (report[s] is None or fm == "ar_pipeline"):
                f += send  # the sender-side send to the next stage precedes everything it sends on
            fwd.append(f)
        # the simulator starts every stage control_hop after the broadcast; stages 2..n wait ``late`` more, and a
        # stage's output reaches rank 0 its measured report after its forward (the sends, transfer and receive)
        stage_start = tuple(TimeSpec.const(late if s > 0 else 0.0) for s in range(n)) if late > 0 else None
        report_hop = tuple(None if r is None else TimeSpec.const(r) for r in report) if any(
            r is not None for r in report) else None
        m.update({"stages": n, "split": list(split),
                  "stage_forward_ms": [_lat(f, _ratio(st.spread) if st.spread.mean_ms else Dist(1.0), spread) for f in fwd],
                  "placement": {"controller": devs[0], "stages": devs[1:]}})
        timing["hop"] = intra.mean_ms
        topo = {"devices_per_node": per_node, "hop_intra_node": intra.mean_ms, "hop_inter_node": inter.mean_ms}
        # the closed form has one path, the last stage's: its later start and its measured report go to the fixed
        # costs there (the simulator takes them per stage, from ``costs``)
        timing["verify"] = max(cost["verify"] + (report[-1] - intra.mean_ms if report[-1] is not None else 0.0), 0.0)
        timing["cycle_overhead"] = cost["control"] + cost["control_hop"] + cost["bookkeeping"] + (late if n > 1 else 0.0)
        if d_ms is not None:
            m["draft_layers"] = ls
            timing["draft_layer"] = _lat((d_ms + collect) / ls, profile.draft_spread, spread)
    else:
        timing.update({"verify": 0.0, "cycle_overhead": 0.0})
        if method == "eagle3" and profile.draft:  # one chain step: the draft fit at L_s layers over one row
            ls = int(draft_layers or 1)
            src, _ = resolve_draft_source(profile.draft, draft_source, shape.name)
            d_ms = profile.draft[src](const=1.0, draft_layers=float(ls), draft_layer_rows=float(ls),
                                      draft_layer_mparams=float(ls) * shape.layer_mparams)
            timing["draft_layer"] = d_ms / ls
            notes.append(f"eagle3: a draft step costs the profile's {src} draft at one row; round verify/overheads not profiled (0)")
    if extra:
        m.update(extra)
    obj = {"version": 1, "name": name or method, "target": {"layers": shape.layers, "name": shape.name,
                                                          "hidden_size": shape.hidden_size},
           "timing_ms": timing, "acceptance": {"alpha": 1.0}, "methods": [m]}
    if topo:
        obj["topology"] = topo
    scen = parse_scenario(obj, f"profile:{name or method}")
    if acceptance is not None:
        scen = replace(scen, acceptance=acceptance)
    if pipeline and fm in ("spd", "ppsd") and profile.verify_fill is not None:
        cost["verify_fill"] = profile.verify_fill.mean_ms * (1.0 if st.concurrent else c0)  # no token finishes: no head
        before["verify_fill"] = cost["verify_fill"]
        if overhead.get("fill"):
            _take_off(cost, ("verify_fill",), overhead["fill"])
    # what a serial cost could not absorb comes off the cycle as a whole (session-8 profiles; older ones as fitted)
    credit = _credit(overhead, before, cost, fm) if pipeline and st.concurrent else {}
    c = {k: Latency.constant(v) for k, v in cost.items()}
    if spread != "constant" and profile.cost_spread.cv > 0:
        for k in ("control", "verify", "verify_fill"):
            if cost.get(k, 0.0) > 0:
                c[k] = Latency("lognormal", cost[k], profile.cost_spread.cv)
    head = mt.head(const=1.0, head_mparams=shape.head_mparams) * c0 if pipeline and mt is not None and mt.head else 0.0
    costs = CycleCosts(control=TimeSpec.of(c["control"]), verify=TimeSpec.of(c["verify"]),
                       bookkeeping=TimeSpec.of(c["bookkeeping"]), flush=TimeSpec.of(c["flush"]),
                       control_hop=TimeSpec.of(c["control_hop"]),
                       verify_fill=TimeSpec.of(c["verify_fill"]) if "verify_fill" in c else None,
                       head=TimeSpec.const(min(head, cost["verify"])),
                       report_stages=reporting if pipeline and fm == "spd" else None,
                       credit=credit, stage_start=stage_start, report_hop=report_hop)
    return Calibrated(scen, costs, tuple(notes))


def trace_overhead_ms(profile: Profile, method: str, n: int) -> dict[str, float]:
    """What ``--trace full`` adds to each cycle event of ``method`` at n stages (ms): the AR pipeline's events
    fitted per rank on its serial path (``sim.calibration.fit.fit_trace_overhead``; the profile loader allows them
    for no other method) times its n + 1 ranks, winning over a per-cycle value of the same event; per-cycle values
    (SPD's, version-1 profiles') as they are."""
    out = {}
    for event, ms in profile.trace_overhead_ms.get(method, {}).items():
        if event.endswith(PER_RANK):
            out[event[: -len(PER_RANK)]] = ms * (n + 1)
        else:
            out.setdefault(event, ms)
    return out


def _report_ms(mt, labels, rank: int, reporting: tuple[int, ...] | None) -> float | None:
    """How long after its forward a stage's output is at rank 0 (the profile's report on its link type), for a
    stage that sends rank 0 its output; None when it sends none or the profile has no report on that link."""
    if mt is None or not mt.report or (reporting is not None and rank not in reporting):
        return None
    d = mt.report.get(link_type_of(labels[rank], labels[0]))
    return d.mean_ms if d is not None else None


def anchor_stages(layers: int, split: tuple[int, ...]) -> tuple[int, ...]:
    """The stages (1-based) that send rank 0 their output every cycle in SPD: those producing an anchor layer of
    the draft module (SPEC.md 1.2's default {0, L/n, 3L/n, 6L/n, L-1}, k L/n read as the layers after k stages of
    the split, as ``reference.draft.default_anchors``), and the last (the finished token's final hidden)."""
    passed = [sum(split[:k]) for k in range(len(split) + 1)]
    n = len(split)
    anchors = {0, passed[min(1, n)], passed[min(3, n)], passed[min(6, n)], max(0, layers - 1)}
    return tuple(s + 1 for s in range(n) if s == n - 1 or any(passed[s] < a <= passed[s + 1] for a in anchors))


def _draft_ms(profile: Profile, shape: ModelShape, draft_source: str | None, layers: int, rows: int,
              c0: float) -> tuple[float, str | None]:
    """One draft forward (ms) of ``layers`` over ``rows`` rows on rank 0's device (slowed by ``c0``), and a note
    when another source's timing stands in."""
    src, note = resolve_draft_source(profile.draft, draft_source, shape.name)
    if src is None or src not in profile.draft:
        raise InputError(f"profile: no draft-module timing for source {src!r} (measured: "
                         f"{', '.join(profile.draft) or 'none'}); calibrate from spd runs with that draft")
    return profile.draft[src](const=1.0, draft_layers=float(layers), draft_layer_rows=float(layers * rows),
                              draft_layer_mparams=float(layers) * shape.layer_mparams) * c0, note


def _credit(overhead: dict[str, float], before: dict[str, float], after: dict[str, float], fm: str) -> dict[str, float]:
    """What the serial costs could not absorb of each cycle event's trace overhead (ms; a cost cannot go below
    zero: a filling cycle loses ~0.5 ms untraced on 4x H200, its verify_fill is ~0.2 ms). The simulator takes it
    off that event's cycles as a whole, so each event's cycle is shorter by exactly the measured overhead."""
    cut = {k: before.get(k, 0.0) - after.get(k, 0.0) for k in before}
    shared = cut["control"] + cut["control_hop"]  # paid by every cycle
    out = {}
    for event, ms in overhead.items():
        own = {"fill": cut.get("verify_fill", 0.0), "reject": cut["verify"] + cut["flush"]}.get(event, cut["verify"])
        if fm == "ar_pipeline" and event != "ar" or fm != "ar_pipeline" and event == "ar":
            continue
        left = ms - shared - own
        if left > 1e-9:  # a negative overhead (twins from different calls: the machine's own spread) adds nothing
            out[event] = left
    return out


def _take_off(cost: dict[str, float], keys: tuple[str, ...], ms: float) -> None:
    """Subtract ``ms`` from the costs in ``keys``, in order, none below zero (the trace overhead is a per-cycle
    total; the serial costs of rank 0 absorbed it)."""
    for k in keys:
        if ms <= 0:
            return
        cut = min(cost.get(k, 0.0), ms)
        cost[k] = cost.get(k, 0.0) - cut
        ms -= cut


def profile_to_scenarios(profile: Profile, base: Scenario, spread: str = "lognormal",
                         draft_source: str | None = None) -> list[Calibrated]:
    """Replace a scenario's timings by the profile's: one calibrated single-method scenario per method of
    ``base`` (its target, acceptance, stages, split and draft layers are kept)."""
    shape, notes = resolve_shape(profile, base.target.layers, base.target.name, base.target.hidden_size)
    out = []
    for spec in base.methods:
        cal = calibrate_spec(profile, shape, spec, base, spread, draft_source)
        out.append(Calibrated(cal.scenario, cal.costs, tuple(notes) + cal.notes))
    return out


def calibrate_spec(profile: Profile, shape: ModelShape, spec: MethodSpec, base: Scenario, spread: str = "lognormal",
                   draft_source: str | None = None, split: tuple[int, ...] | None = None) -> Calibrated:
    """One method of a scenario with the profile's timings (``split`` overrides the method's own)."""
    placement = None
    if spec.placement is not None:
        placement = tuple(f"node/dev{d}" for d in (spec.placement.controller, *spec.placement.stages))
    return calibrated_method(profile, shape, spec.method, stages=spec.stages, draft_layers=spec.draft_layers,
                             split=split or spec.split, placement=placement, draft_source=draft_source,
                             acceptance=spec.acceptance or base.acceptance, spread=spread, name=spec.name,
                             extra=_passthrough(spec))


def _passthrough(spec: MethodSpec) -> dict:
    """Method keys the profile does not set (chain steps, SD gamma / cost ratio, finite token count)."""
    d = {k: getattr(spec, k) for k in ("steps", "gamma", "cost_ratio") if getattr(spec, k) is not None
         and spec.method in ("sd", "eagle3")}
    if spec.method == "eagle3" and spec.draft_layers:
        d["draft_layers"] = spec.draft_layers
    d.update(spec.extra)
    return d
