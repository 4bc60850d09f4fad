#!/bin/bash
# Submits a night: the shard array, then the merge, which runs only when
# every array task succeeded. A failed task is re-run with
#   sbatch --array=<index> --export=ALL,NIGHT=<night> nightscreen.sbatch
# (it resumes), then merge.sbatch by hand.
# Usage: NIGHTSCREEN_INPUT=... NIGHTSCREEN_OUT=... NIGHTSCREEN_KEY_FILE=... submit.sh [NIGHT]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export NIGHT="${1:-$(date -u +%Y-%m-%d)}"
array=$(sbatch --parsable --export=ALL "$here/nightscreen.sbatch")
sbatch --parsable --export=ALL --dependency="afterok:${array}" "$here/merge.sbatch"
echo "night $NIGHT: shards job $array, merge after it"
