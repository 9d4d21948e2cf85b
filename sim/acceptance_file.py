"""Acceptance measured by `spd eval-acceptance` as a scenario's acceptance input (docs/acceptance-format.md).

Scenario syntax::

    "acceptance": {"file": "results/acceptance.json", "dataset": "overall", "method": "spd", "stages": 4,
                   "temperature": 0}

``file`` is resolved against the scenario's directory. ``dataset`` (default ``overall``): a prompt set name or
``overall``. ``method`` (default ``spd``): ``spd`` | ``ppsd`` | ``chain``. ``stages`` selects among several
SPD/PPSD results (required when there is more than one), ``steps`` among chain results. ``temperature``
defaults to 0.

Result: an :class:`~sim.scenario.Acceptance` of form ``file`` whose ``alpha`` is the pooled per-draft
(conditional) acceptance and whose ``sequence`` is the recorded accept(1)/reject(0) sequence of the chosen
prompts, in file order, for replay. For a chain result, ``per_position`` holds the conditional per-position
acceptance and the sequence is rebuilt from the rounds (a accepted drafts then a reject when a < drafted).
Torch-free.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .closed_form import alpha_from_chain_tokens
from .errors import InputError, where
from .scenario import Acceptance

FORMAT, VERSIONS = "spd-acceptance", (1,)
_KEYS = {"file", "dataset", "method", "stages", "steps", "temperature"}


def acceptance_from_file(obj: dict, src: str | None, fld: str, base_dir: Path | None = None) -> Acceptance:
    unknown = sorted(set(obj) - _KEYS)
    if unknown:
        raise InputError(f"{where(src, fld)}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(_KEYS))})")
    name = obj.get("file")
    if not isinstance(name, str) or not name:
        raise InputError(f"{where(src, fld)}.file: expected a path to an `spd eval-acceptance` result file")
    path = Path(name)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{where(src, fld)}.file: {path} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{where(src, fld)}.file: {path}: not a readable JSON file ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") not in VERSIONS:
        raise InputError(f"{where(src, fld)}.file: {path}: not an {FORMAT} file of version {VERSIONS}")
    method = obj.get("method", "spd")
    if method not in ("spd", "ppsd", "chain"):
        raise InputError(f"{where(src, fld)}.method: expected spd, ppsd or chain, got {method!r}")
    temp = obj.get("temperature", 0)
    if isinstance(temp, bool) or not isinstance(temp, (int, float)):
        raise InputError(f"{where(src, fld)}.temperature: expected a number")
    dataset = obj.get("dataset", "overall")
    if not isinstance(dataset, str):
        raise InputError(f"{where(src, fld)}.dataset: expected a string")
    sel_key = "steps" if method == "chain" else "stages"
    cands = [r for r in doc.get("results", []) if isinstance(r, dict) and r.get("method") == method
             and float(r.get("temperature", -1)) == float(temp)]
    if sel_key in obj:
        want = obj[sel_key]
        if isinstance(want, bool) or not isinstance(want, int):
            raise InputError(f"{where(src, fld)}.{sel_key}: expected an integer")
        cands = [r for r in cands if r.get(sel_key) == want]
    have = sorted({r.get(sel_key) for r in cands})
    if not cands:
        raise InputError(f"{where(src, fld)}: {path} has no {method} result at temperature {temp}"
                         + (f" with {sel_key}={obj[sel_key]}" if sel_key in obj else ""))
    if len(cands) > 1:
        raise InputError(f"{where(src, fld)}.{sel_key}: {path} has several {method} results at temperature {temp} "
                         f"({sel_key} {have}); choose one")
    r = cands[0]
    summary = r.get("summary", {})
    if dataset not in summary:
        raise InputError(f"{where(src, fld)}.dataset: {dataset!r} not in {path} (have {', '.join(sorted(summary))})")
    prompts = [p for p in r.get("prompts", []) if dataset == "overall" or p.get("dataset") == dataset]
    s = summary[dataset]
    label = f"{path.name}: {method} {sel_key}={r.get(sel_key)} T={temp:g} {dataset}"
    if method == "chain":
        steps = int(r["steps"])
        bits: list[int] = []
        for p in prompts:
            for a, dr in zip(p.get("rounds", []), p.get("drafted", [])):
                bits += [1] * a + ([0] if a < dr else [])
        pp = s.get("per_position_alpha") or []
        if not bits or any(x is None for x in pp[:1]):
            raise InputError(f"{where(src, fld)}: {label}: no verified drafts recorded")
        per_pos = tuple(float(x) for x in pp if x is not None)
        tau = s.get("tau_pooled")
        alpha = float(alpha_from_chain_tokens(tau, steps)) if tau else sum(bits) / len(bits)
        return Acceptance(alpha, "file", per_position=per_pos, sequence=tuple(bits), source=label)
    seq: list[int] = []
    for p in prompts:
        acc = p.get("accepts", "")
        if not isinstance(acc, str) or set(acc) - {"0", "1"}:
            raise InputError(f"{where(src, fld)}: {label}: accepts of question {p.get('question_id')} is not a 0/1 string")
        seq += [int(c) for c in acc]
    alpha = s.get("alpha_pooled")
    if not seq or alpha is None:
        raise InputError(f"{where(src, fld)}: {label}: no verified drafts recorded")
    return Acceptance(float(alpha), "file", sequence=tuple(seq), source=label)
