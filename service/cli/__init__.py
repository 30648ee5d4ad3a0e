"""The command line: `python -m service …` / `calcom-verifier …` (processes and operator commands)."""

from service.cli.parser import main

__all__ = ["main"]
