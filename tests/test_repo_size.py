"""The committed checkpoints and traces stay under 30 MB together (issue 5's limit): the whole working tree
travels to the GPU machine on every call (64 MiB in all, a model part included)."""
from pathlib import Path

ROOT = Path(__file__).parents[1]
LIMIT_BYTES = 30_000_000  # decimal MB, as the issue states it


def _bytes_under(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def test_checkpoints_and_traces_under_30_mb():
    total = _bytes_under(ROOT / "reference" / "checkpoints") + _bytes_under(ROOT / "traces")
    assert total <= LIMIT_BYTES, f"checkpoints + traces = {total / 1e6:.2f} MB > 30 MB"
