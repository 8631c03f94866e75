"""Evaluate a system on fresh prompts (judge + metrics + CIs), compare evaluations, and run human-rating sheets.
A thin entry point: the same as `arastory evaluate ...` and `python -m arastory.evaluate ...`
(arastory/commands/evaluate.py).

    python evaluate.py run=outputs/train/2026-11-27/12-00-00 out=outputs/eval/direct-egy
    python evaluate.py run=<run dir> system=openai system.model=gpt-3.5-turbo prompts=<eval dir>/prompts.jsonl
    python evaluate.py system=file system.path=../shared/data/arastories out=outputs/eval/released-gpt4 judge=none
    python evaluate.py compare=multirun-eval/2026-11-27/12-00-00 out=outputs/compare
    python evaluate.py human.export=[outputs/eval/a,outputs/eval/b] out=outputs/human
    python evaluate.py human.import=[r1.csv,r2.csv] human.key=outputs/human/key.json human.evals=[<a>,<b>] out=<dir>
"""

from arastory.commands.evaluate import main, run

__all__ = ["main", "run"]

if __name__ == "__main__":
    run()
