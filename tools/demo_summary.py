"""Prints the summary `make demo` shows after a run: studies per worklist
band (in the run's configured band order, most urgent first) and the image
counts, read from the run's run.json.

usage: python3 tools/demo_summary.py OUT/run.json

Needs only the standard library, so the demo runs on the system python3.
"""

import json
import sys


def main(argv):
    if len(argv) != 2:
        raise SystemExit("usage: demo_summary.py OUT/run.json")
    with open(argv[1], encoding="utf-8") as f:
        run = json.load(f)
    counts = run["counts"]
    seen = counts["bands"]
    # run.json records the configured bands; older files only the counts.
    bands = run.get("bands") or list(seen)
    print("studies per band:", ", ".join(f"{band} {seen.get(band, 0)}" for band in bands))
    print("images scored", counts["frames_scored"], "skipped", counts["skipped"], "errors", counts["errors"])


if __name__ == "__main__":
    main(sys.argv)
