"""Measured acceptance for the What-if knobs (no Streamlit): an `spd eval-acceptance` result file
(docs/acceptance-format.md) read through the package's loader, `sim.acceptance_file.acceptance_from_file`.

The file holds one result per (drafter, temperature) with per-dataset summaries; the What-if page takes
SPD's pooled per-draft alpha for the chosen stages n (PPSD's likewise, and the chain head's constant alpha
for EAGLE-3 when its step count matches), and says when the file has no result at that n.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from sim.acceptance_file import FORMAT, VERSIONS, acceptance_from_file
from sim.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = {
    "Measured: SmolLM2-135M, committed draft modules, 4x H100 (results/h100x4/training_s9/acceptance.json)":
        ROOT / "results" / "h100x4" / "training_s9" / "acceptance.json",
}


@dataclass(frozen=True)
class AcceptanceTable:
    """Per (dataset, temperature): method -> {stages or steps: alpha}, from one result file."""

    name: str  # shown in messages (file name, not a temporary path)
    target: str
    datasets: tuple[str, ...]
    temperatures: tuple[float, ...]
    alphas: dict = field(default_factory=dict)  # (dataset, temperature) -> {"spd": {n: a}, "ppsd": {...}, "chain": {...}}

    def lookup(self, method: str, dataset: str, temperature: float) -> dict[int, float]:
        return self.alphas.get((dataset, float(temperature)), {}).get(method, {})


def _parse(path: Path, name: str) -> AcceptanceTable:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{name}: not a readable JSON file ({str(exc).replace(str(path), name)})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") not in VERSIONS:
        raise InputError(f"{name}: not an {FORMAT} file of version {VERSIONS} "
                         f"(format {doc.get('format') if isinstance(doc, dict) else None!r}, "
                         f"version {doc.get('version') if isinstance(doc, dict) else None!r})")
    results = [r for r in doc.get("results", []) if isinstance(r, dict)]
    datasets = sorted({d for r in results for d in (r.get("summary") or {})}, key=lambda d: (d == "overall", d))
    temps = sorted({float(r.get("temperature", 0)) for r in results})
    alphas: dict = {}
    for ds in datasets:
        for t in temps:
            per: dict[str, dict[int, float]] = {}
            for r in results:
                method, key = r.get("method"), ("steps" if r.get("method") == "chain" else "stages")
                if float(r.get("temperature", -1)) != t or ds not in (r.get("summary") or {}) or r.get(key) is None:
                    continue
                sel = {"file": str(path), "dataset": ds, "method": method, key: int(r[key]), "temperature": t}
                try:
                    acc = acceptance_from_file(sel, name, "acceptance")
                except InputError:
                    continue  # e.g. no verified drafts in this dataset: not offered
                per.setdefault(method, {})[int(r[key])] = float(acc.alpha)
            alphas[(ds, t)] = per
    target = (doc.get("target") or {}).get("name") or "?"
    if not any(v.get("spd") for v in alphas.values()):
        raise InputError(f"{name}: no SPD result with a per-draft alpha in this file")
    return AcceptanceTable(name, str(target), tuple(datasets), tuple(temps), alphas)


def load_table(path: str | Path) -> AcceptanceTable:
    p = Path(path)
    return _parse(p, p.name)


def load_uploaded(name: str, data: bytes) -> AcceptanceTable:
    """An uploaded result file; errors name the upload, not the temporary copy."""
    with tempfile.TemporaryDirectory(prefix="spd-acc-") as tmp:
        p = Path(tmp) / "acceptance.json"
        p.write_bytes(data)
        return _parse(p, name)


@dataclass(frozen=True)
class Choice:
    """What the file gives the knobs at the current configuration, and what it could not give."""

    overrides: dict  # knob name -> alpha
    messages: tuple[str, ...]


def choose(table: AcceptanceTable, dataset: str, temperature: float, stages: int, eagle3_steps: int) -> Choice:
    spd = table.lookup("spd", dataset, temperature)
    ppsd = table.lookup("ppsd", dataset, temperature)
    chain = table.lookup("chain", dataset, temperature)
    over, msgs = {}, []
    if stages in spd:
        over["alpha_spd"] = spd[stages]
    else:
        msgs.append(f"SPD: n = {stages} is not in {table.name} (measured n: {', '.join(map(str, sorted(spd))) or 'none'}); "
                    "using the slider's alpha")
    if stages in ppsd:
        over["alpha_ppsd"] = ppsd[stages]
    if eagle3_steps in chain:
        over["alpha_eagle3"] = chain[eagle3_steps]
    return Choice(over, tuple(msgs))
