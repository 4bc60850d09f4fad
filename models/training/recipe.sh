#!/usr/bin/env bash
# The whole dr-screen recipe, from nothing to models/dr-screen.{onnx,toml}
# and the thresholds in configs/desp.toml. Run from the repository root after
# `make build ort venv` and the training environment in README.md:
#
#   bash models/training/recipe.sh [WORK_DIR]      (default /tmp/dr-train)
#
# Steps whose output already exists in WORK_DIR are skipped, so a stopped run
# picks up where it was. Seeds: train 1, thresholds 2, held out 3.
set -euo pipefail
W=${1:-/tmp/dr-train}
ROOT=$(pwd)
NS=$ROOT/target/release/nightscreen
TP=$ROOT/.deps/train-venv/bin/python   # torch (Debian python3-torch), pydicom, onnxruntime
VP=$ROOT/.deps/venv/bin/python         # pyarrow, for reading nightscreen's images/ table
EPOCHS=${EPOCHS:-12}
mkdir -p "$W"
step() { echo "== $*"; }

for split in "train 1200 1" "val 300 2" "test 500 3"; do
  set -- $split
  [ -f "$W/$1/truth.csv" ] || { step "synth $1"; $NS synth --studies "$2" --seed "$3" --out "$W/$1" --overwrite; }
done
cd models/training
for split in train val; do
  [ -f "$W/${split}384.npz" ] || { step "prepare $split"; $TP prepare.py --data "$W/$split" --out "$W/${split}384.npz"; }
done
[ -f "$W/dr-screen.pt" ] || { step "train ($EPOCHS epochs)"; $TP train.py --train "$W/train384.npz" --val "$W/val384.npz" --out "$W/dr-screen.pt" --epochs "$EPOCHS"; }
step "export"
$TP export.py --weights "$W/dr-screen.pt" --out ../dr-screen.onnx --check "$W/val384.npz"
$TP card.py --onnx ../dr-screen.onnx --out ../dr-screen.toml
cd "$ROOT"

step "thresholds from the validation batch (seed 2), scored by nightscreen itself"
$NS run --config configs/desp.toml --input "$W/val" --out "$W/val-run" --overwrite
$VP models/training/from_nightscreen.py "$W/val-run" "$W/val_probs.csv"
$TP models/training/evaluate.py --probs "$W/val_probs.csv" --truth "$W/val" --choose "$W/thresholds.json"
python3 models/training/apply_thresholds.py "$W/thresholds.json" configs/desp.toml

step "held-out figures (seed 3) through the binary, into the card"
$NS run --config configs/desp.toml --input "$W/test" --out "$W/test-run" --overwrite
python3 tools/evaluate_desp.py "$W/test-run" "$W/test/truth.csv" --json "$W/heldout.json"
(cd models/training && $TP card.py --onnx ../dr-screen.onnx --out ../dr-screen.toml \
  --thresholds "$W/thresholds.json" --evaluation "$W/heldout.json" --studies 500 --seed 3)
echo "done: models/dr-screen.onnx, models/dr-screen.toml, configs/desp.toml; check with: make evaluate"
