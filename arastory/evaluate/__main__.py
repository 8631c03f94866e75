"""`python -m arastory.evaluate ...`: the evaluation command (arastory/commands/evaluate.py), as `arastory evaluate`."""

from arastory.commands.evaluate import run

run()
