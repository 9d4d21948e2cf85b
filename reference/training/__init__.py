"""Offline training of draft modules (PDM, EAGLE-style chain head, PPSD-style draft) and acceptance
measurement. See docs/training.md. Everything here imports torch; command modules import it lazily."""
