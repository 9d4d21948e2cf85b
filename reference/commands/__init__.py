"""`spd` subcommands implemented in reference/ (one module each: add_arguments + run; torch imported inside run)."""
