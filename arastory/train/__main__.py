"""`python -m arastory.train ...`: the training command (arastory/commands/train.py), as `arastory train`."""

from arastory.commands.train import run

run()
