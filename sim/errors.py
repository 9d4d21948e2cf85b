"""One error type for bad user input.

Every command catches :class:`InputError` at the top (``sim.cli.main``) and prints its message as one
line on stderr with exit status 2: bad input never produces a traceback.
"""


class InputError(Exception):
    """Bad user input. The message names the file and the field, e.g. ``scen.json: methods[1].stages: ...``."""


def where(source: str | None, field: str) -> str:
    """Prefix for messages: ``file: field`` (or just the field when there is no file)."""
    return f"{source}: {field}" if source else field
