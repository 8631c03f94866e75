"""`python -m arastory.data fetch <dataset> out=<dir> [base_url=<url>] [timeout=60]`: download a pinned public release;
`python -m arastory.data merge <out>`: merge the shards of a translate, filter or synthesize job (shard=i/n).

    python -m arastory.data fetch arastories out=data/arastories
    python train.py data=arastories data.synthetic.path=data/arastories
    python -m arastory.synthesize dialect=mor n=100 dialect_id=released dialect_id.source=data/arastories

Exit codes: 0 done; 1 the download was interrupted (rerun the same command: it resumes); 2 bad arguments or a
file that is not the pinned one (checksum mismatch).

    python -m arastory.translate -m hydra/launcher=joblib source=stories.jsonl out=outputs/big shard=0/4,1/4,2/4,3/4
    python -m arastory.data merge outputs/big           # -> outputs/big/parallel.jsonl
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from arastory.cli import fail, one_line_errors

USAGE = (
    "usage: python -m arastory.data fetch <dataset> out=<dir> [base_url=<url>] [timeout=<seconds>] [progress=false]"
    " | merge <out> [--allow-incomplete]"
)
KEYS = ("out", "base_url", "timeout", "progress")


def parse(argv: list[str]) -> tuple[str, dict]:
    if argv[:1] in (["--help"], ["-h"]):
        print(__doc__.strip())
        sys.exit(0)
    positional = [a for a in argv if "=" not in a]
    options: dict[str, Any] = dict(a.split("=", 1) for a in argv if "=" in a)
    if len(positional) != 2 or positional[0] != "fetch":
        fail(USAGE)
    unknown = [k for k in options if k not in KEYS]
    if unknown:
        fail(f"config error: {unknown[0]}: unknown option (options: {', '.join(KEYS)})")
    if not options.get("out"):
        fail("config error: out: where to put the files? out=<dir>")
    try:
        options["timeout"] = float(options.get("timeout", 60))
    except ValueError:
        fail(f"config error: timeout: must be a number of seconds, got {options['timeout']!r}")
    options["progress"] = options.get("progress", "true").lower() not in ("false", "0", "no")
    return positional[1], options


@one_line_errors
def merge_main(argv: list[str]) -> dict:
    from arastory.data.merge import REPORT, merge

    parser = argparse.ArgumentParser(
        prog="python -m arastory.data merge", description="merge <out>/shards/* into <out>/"
    )
    parser.add_argument("out", help="the out= of the sharded job (holds shards/<i>-of-<n>/)")
    parser.add_argument("--allow-incomplete", action="store_true", help="merge even if some shards did not finish")
    args = parser.parse_args(argv)
    report = merge(args.out, allow_incomplete=args.allow_incomplete)
    files = ", ".join(f"{args.out}/{name}" for name in report["files"].values())
    print(f"[arastory] merged {report['shards']} {report['stage']} shards into {files}; report: {args.out}/{REPORT}")
    if report.get("short_by", 0) > 0:
        short = report["short_by"]
        print(
            f"[arastory] {short} {'story' if short == 1 else 'stories'} short of n={report['counts']['requested']} "
            "(duplicates across shards): rerun the shards with a larger n (each resumes, no prompt is asked twice) "
            "and merge again"
        )
    return report


def main(argv: list[str]) -> None:
    if argv[:1] == ["merge"]:
        merge_main(argv[1:])
        return
    from arastory.data.fetch import RELEASES, DownloadError, fetch
    from arastory.errors import ArastoryError

    name, options = parse(argv)
    try:
        done = fetch(name, options["out"], options.get("base_url"), options["timeout"], options["progress"])
    except DownloadError as error:
        fail(str(error), code=1)
    except ArastoryError as error:
        fail(str(error))
    release = RELEASES[name]
    for file, how in done.items():
        print(f"[arastory.data] {file}: {how}, verified")
    print(f"[arastory.data] {name} ({release.license}, {release.homepage}) -> {options['out']} (SHA256SUMS written)")
    print(f"  use: python train.py data=arastories data.synthetic.path={options['out']}")
    print(f"       python -m arastory.synthesize dialect=mor dialect_id=released dialect_id.source={options['out']}")


if __name__ == "__main__":
    main(sys.argv[1:])
