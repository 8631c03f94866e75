"""The `arastory` console script: one subcommand per pipeline step, each run exactly as `python -m <its module>`, so
`arastory <command> --help` is that step's Hydra help and every override works the same way."""

from __future__ import annotations

import runpy
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    module: str  # run as `python -m <module>`
    summary: str  # the line `arastory --help` shows


# Adding a command is one entry here (its module needs a `__main__` that reads sys.argv like `python -m` does).
COMMANDS: dict[str, Command] = {
    "translate": Command("arastory.translate", "translate English stories to Arabic (parallel.jsonl, report.json)"),
    "filter": Command("arastory.filter", "keep faithful EN-AR pairs: similarity, checks, dedup (kept.jsonl, report)"),
    "synthesize": Command("arastory.synthesize", "write synthetic stories per variety from feature prompts"),
    "train": Command("arastory.train", "QLoRA fine-tune a causal LM, direct or sequential (same as train.py)"),
    "evaluate": Command("arastory.evaluate", "judge, score, compare and human-rate systems (same as evaluate.py)"),
    "dialect": Command("arastory.dialect", "measure or train the dialect identifier (`dialect evaluate|train ...`)"),
    "data": Command("arastory.data", "download a pinned public release, resumable, checksummed (`data fetch ...`)"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items()]
    return "\n".join(
        [
            "usage: arastory <command> [overrides ...]   (Hydra overrides, e.g. `arastory train dialect=egy`)",
            "",
            "commands:",
            *lines,
            "",
            "`arastory <command> --help` shows that command's config groups and options.",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if args else 2
    if args[0] == "--version":
        from importlib.metadata import version

        print(f"arastory {version('arastory')}")
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"arastory: '{name}' is not one of: {', '.join(COMMANDS)} (see `arastory --help`)", file=sys.stderr)
        return 2
    sys.argv = [f"arastory {name}", *rest]
    runpy.run_module(COMMANDS[name].module, run_name="__main__", alter_sys=True)
    return 0
