#!/usr/bin/env bash
# Seed corpus for the dicom_file fuzz target: the smaller pydicom test files
# (every codec nightscreen reads) and one synthetic fundus photograph.
# Usage (from the repository root, after `make testdata build`):
#   bash fuzz/make_seeds.sh fuzz/corpus/dicom_file
set -euo pipefail
DEST=${1:-fuzz/corpus/dicom_file}
mkdir -p "$DEST"
i=0
while IFS= read -r f; do
  i=$((i + 1)); cp "$f" "$DEST/$i-$(basename "$f")"
done < <(find .deps/testdata -type f -size -200k \( -name '*.dcm' -o -name 'DICOMDIR' \) | sort)
tmp=$(mktemp -d)
target/release/nightscreen synth --studies 1 --seed 31 --out "$tmp" >/dev/null 2>&1
find "$tmp" -name '*.dcm' | head -1 | xargs -I{} cp {} "$DEST/synthetic-fundus.dcm"
rm -rf "$tmp"
echo "fuzz seeds: $(ls "$DEST" | wc -l) files in $DEST"
