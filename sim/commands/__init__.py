"""`spd` subcommands implemented in sim/ (one module each: add_arguments + run)."""
