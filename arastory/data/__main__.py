"""`python -m arastory.data merge <out>`: merge the shards of a translate, filter or synthesize job (shard=i/n).

    python -m arastory.translate -m hydra/launcher=joblib source=stories.jsonl out=outputs/translate/big shard=0/4,1/4,2/4,3/4
    python -m arastory.data merge outputs/translate/big           # -> outputs/translate/big/parallel.jsonl
"""

import argparse

from arastory.cli import one_line_errors


@one_line_errors
def main(argv: list[str] | None = None) -> dict:
    from arastory.data.merge import REPORT, merge

    parser = argparse.ArgumentParser(prog="python -m arastory.data", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    merging = commands.add_parser("merge", help="merge <out>/shards/* into <out>/")
    merging.add_argument("out", help="the out= of the sharded job (holds shards/<i>-of-<n>/)")
    merging.add_argument("--allow-incomplete", action="store_true", help="merge even if some shards did not finish")
    args = parser.parse_args(argv)
    report = merge(args.out, allow_incomplete=args.allow_incomplete)
    files = ", ".join(f"{args.out}/{name}" for name in report["files"].values())
    print(f"[arastory] merged {report['shards']} {report['stage']} shards into {files}; report: {args.out}/{REPORT}")
    return report


if __name__ == "__main__":
    main()
