#!/usr/bin/env bash
# Kill training mid-epoch, resume, and compare with an uninterrupted run, bit for bit.
#
#   bash models/training/test_resume.sh [WORK_DIR]     (default: a new temporary folder)
#
# A tiny data set (40 v2 studies, 160 images, cached at 256 px; seed 91, no
# recipe seed), DRNet2 at 256, 2 epochs of 20 steps, checkpoints every ~2 s:
#  A  trains uninterrupted;
#  B  is killed (SIGKILL) in its first epoch once a mid-epoch checkpoint exists
#     and a few more steps have run, then started again with the same command
#     (it resumes from the checkpoint) and finishes.
# Passes when B's final weights (every tensor, BatchNorm statistics included)
# equal A's exactly and B really resumed mid-epoch. Needs the nightscreen binary
# (NS) and the training venv (TP). Takes a few minutes; not part of `make test`.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
NS=${NS:-$ROOT/target/release/nightscreen}
TP=${TP:-$ROOT/train-venv/bin/python}
W=${1:-$(mktemp -d /tmp/resume-test.XXXXXX)}
mkdir -p "$W"
cd "$ROOT/models/training"
[ -f "$W/data/truth.csv" ] || "$NS" synth --generator v2 --studies 40 --seed 91 --out "$W/data" --overwrite
[ -d "$W/cache256" ] || "$TP" prepare.py --data "$W/data" --out "$W/cache256" --size 256
args=(--train "$W/cache256" --val "$W/cache256" --arch drnet2-256 --epochs 2 --batch 8 --ckpt-minutes 0.03)

rm -f "$W"/A.pt* "$W"/B.pt*
echo "== A: uninterrupted"
"$TP" train.py "${args[@]}" --out "$W/A.pt" 2>&1 | grep -v Warning | tee "$W/A.log"

echo "== B: killed mid-epoch"
"$TP" train.py "${args[@]}" --out "$W/B.pt" > "$W/B1.log" 2>&1 &
pid=$!
while [ ! -f "$W/B.pt.ckpt" ]; do
  kill -0 $pid 2>/dev/null || { echo "B ended before its first checkpoint"; exit 1; }
  sleep 0.2
done
sleep 3
kill -KILL $pid
wait $pid 2>/dev/null || true
[ ! -f "$W/B.pt" ] || { echo "B finished before it was killed: make the kill earlier"; exit 1; }
echo "== B: started again"
"$TP" train.py "${args[@]}" --out "$W/B.pt" 2>&1 | grep -v Warning | tee "$W/B2.log"
grep -q "^resumed from .*: epoch 1, step [1-9]" "$W/B2.log" || { echo "B did not resume mid-epoch 1"; exit 1; }

"$TP" - "$W/A.pt" "$W/B.pt" <<'PY'
import sys, torch
a, b = torch.load(sys.argv[1]), torch.load(sys.argv[2])
assert a.keys() == b.keys()
diff = {k: float((a[k].double() - b[k].double()).abs().max()) for k in a if not torch.equal(a[k], b[k])}
print(f"{len(a)} tensors compared; {len(diff)} differ" + (f": {diff}" if diff else " (bit for bit equal)"))
sys.exit(1 if diff else 0)
PY
diff <(grep '^epoch' "$W/A.log" | sed 's/ [0-9]*s / /') <(grep -E '^ *epoch' "$W/B2.log" | sed 's/^ *//; s/ [0-9]*s / /') \
  && echo "epoch logs equal (times aside)"
echo "resume test passed ($W)"
