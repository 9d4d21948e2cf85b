"""A profile + a model shape + methods -> scenarios the closed form and the simulator run unchanged.

One scenario per method: the draft time is ``c + L_s·(u + w·rows)`` (a constant that
``timing_ms.draft_layer`` alone cannot express for several L_s at once) and the fixed costs depend on n,
so each method gets the timing section of its own configuration. Mapping (docs/calibration.md):

* ``stage_forward_ms[s]`` = fitted forward of stage s's layers x the contention factor of its device,
  plus the sender-side cost of its send to the next stage (non-last stages; it precedes the report);
* ``timing_ms.verify`` = verify fit; ``timing_ms.cycle_overhead`` = control + control hop + bookkeeping
  (the closed form has no separate control hop); the simulator gets them apart through
  :class:`sim.des.CycleCosts` (control, control_hop, verify, bookkeeping, flush);
* links: ``topology.hop_intra_node`` / ``hop_inter_node`` from the link types. When ranks share a
  device, devices are renumbered so that "same node" means "same device" (``devices_per_node`` = ranks):
  ``hop_intra_node`` is then the same-device hop and ``hop_inter_node`` the cross-device one;
* ``timing_ms.ar_token`` = L x layer + the AR extra (embedding, head, sampling).
Spread: ``"lognormal"`` (fitted CV), ``"empirical"`` (measured ratio quantiles x mean) or ``"constant"``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..des.latency import TimeSpec
from ..des.plan import CycleCosts
from ..errors import InputError
from ..scenario import Acceptance, Latency, MethodSpec, Scenario, balanced_split, parse_scenario
from .extract import ModelShape
from .fit import shape_lookup
from .profile import Dist, Profile, resolve_draft_source, same_dims_key

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
    labels = placement or tuple(range(len(devs)))
    ranks_on = [list(labels).count(lab) for lab in labels]  # ranks on each rank's physical device
    c0 = st.contention(ranks_on[0], fm)
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
    topo = None
    if pipeline:
        feats = {"const": 1.0, "stages": float(n), "head_mparams": shape.head_mparams}
        cost["control"] = profile.control(**feats) * c0
        mt = profile.by_method.get(fm)
        cost["verify"] = (mt.verify if mt is not None and mt.verify is not None else profile.verify)(**feats) * c0
        if mt is not None and mt.collect is not None:
            # serial receive of the collected outputs after the draft (folded into verify: the simulator's
            # cycle is control + max(draft, stage path) + verify; when the stages are the critical path
            # this double counts the last hop's receive, ~0.2 ms on the H100 traces)
            cost["verify"] += mt.collect.mean_ms
        ctrl_hop, send_d, hops = profile.terms(fm)
        cost["control_hop"] = ctrl_hop.mean_ms
        if mt is not None and mt.stage1_start_floor is not None:  # stage 1 starts at max(broadcast, floor)
            cost["control_hop"] = max(mt.stage1_start_floor.mean_ms - cost["control"], 0.0)
        cost["bookkeeping"] = profile.bookkeeping.mean_ms
        cost["flush"] = profile.flush.mean_ms if fm != "ar_pipeline" else 0.0
        overhead = profile.trace_overhead_ms.get(fm, {}) if untraced else {}
        if overhead:
            steady = overhead.get("ar" if fm == "ar_pipeline" else "accept", 0.0)
            _take_off(cost, ("verify", "control", "control_hop"), steady)
            _take_off(cost, ("flush",), overhead.get("reject", steady) - steady)
            notes.append(f"uninstrumented run: the trace overhead measured on full/cycle-level twins taken off rank "
                         f"0's serial costs ({', '.join(f'{e} {x:.3f}' for e, x in sorted(overhead.items()))} ms per cycle)")
        send = send_d.mean_ms
        fwd = [st.forward_ms(k, shape.key, shape.layer_mparams, ranks_on[s + 1], fm) + (send if s < n - 1 else 0.0)
               for s, k in enumerate(split)]
        m.update({"stages": n, "split": list(split),
                  "stage_forward_ms": [_lat(f, _ratio(st.spread) if st.spread.mean_ms else Dist(1.0), spread) for f in fwd],
                  "placement": {"controller": devs[0], "stages": devs[1:]}})
        if shared:
            intra, inter = hops.get("same_device"), hops.get("intra_node")
        else:
            intra, inter = hops.get("intra_node"), hops.get("inter_node")
        fallback = next(iter(hops.values()))
        if intra is None or inter is None:
            used = [k for k, v in hops.items() if v is fallback][0]
            notes.append(f"a link type was not measured; its hop uses the {used} latency ({fallback.mean_ms:.4f} ms)")
        intra, inter = intra or fallback, inter or intra or fallback
        timing["hop"] = intra.mean_ms
        topo = {"devices_per_node": per_node, "hop_intra_node": intra.mean_ms, "hop_inter_node": inter.mean_ms}
        timing["verify"] = cost["verify"]
        timing["cycle_overhead"] = cost["control"] + cost["control_hop"] + cost["bookkeeping"]
        if fm in ("spd", "ppsd"):
            ls = int(draft_layers or 1)
            m["draft_layers"] = ls
            src, note = resolve_draft_source(profile.draft, draft_source, shape.name)
            if note:
                notes.append(note)
            if src is None or src not in profile.draft:
                raise InputError(f"profile: no draft-module timing for source {src!r} (measured: "
                                 f"{', '.join(profile.draft) or 'none'}); calibrate from spd runs with that draft")
            rows = n + 1  # steady state: the completed token + n in flight (SPEC.md 1.2)
            d_ms = profile.draft[src](const=1.0, draft_layers=float(ls), draft_layer_rows=float(ls * rows)) * c0
            timing["draft_layer"] = _lat(d_ms / ls, profile.draft_spread, spread)
    else:
        timing.update({"verify": 0.0, "cycle_overhead": 0.0})
        if method == "eagle3" and profile.draft:  # one chain step: the draft fit at L_s layers over one row
            ls = int(draft_layers or 1)
            src, _ = resolve_draft_source(profile.draft, draft_source, shape.name)
            d_ms = profile.draft[src](const=1.0, draft_layers=float(ls), draft_layer_rows=float(ls))
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
        cost["verify_fill"] = profile.verify_fill.mean_ms * c0  # a cycle in which no token finishes (no head)
        if overhead.get("fill"):
            _take_off(cost, ("verify_fill",), overhead["fill"])
    c = {k: Latency.constant(v) for k, v in cost.items()}
    if spread != "constant" and profile.cost_spread.cv > 0:
        for k in ("control", "verify", "verify_fill"):
            if cost.get(k, 0.0) > 0:
                c[k] = Latency("lognormal", cost[k], profile.cost_spread.cv)
    costs = CycleCosts(control=TimeSpec.of(c["control"]), verify=TimeSpec.of(c["verify"]),
                       bookkeeping=TimeSpec.of(c["bookkeeping"]), flush=TimeSpec.of(c["flush"]),
                       control_hop=TimeSpec.of(c["control_hop"]),
                       verify_fill=TimeSpec.of(c["verify_fill"]) if "verify_fill" in c else None)
    return Calibrated(scen, costs, tuple(notes))


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
