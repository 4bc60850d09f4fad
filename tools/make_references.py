#!/usr/bin/env python3
"""Per-frame pixel statistics of the real DICOM test objects, as decoded by pydicom.

Usage (from the repository root):
    tools/fetch_testdata.sh .deps/testdata
    tools/make_venv.sh .deps/venv
    .deps/venv/bin/python tools/make_references.py .deps/testdata tests/data/pixel_references.csv

Scans every file under DATA_DIR/pydicom and DATA_DIR/pydicom-data. A file is listed when
pydicom reads it and it has Pixel Data (7FE0,0010), Float Pixel Data (7FE0,0008) or
Double Float Pixel Data (7FE0,0009) -- or, when pydicom cannot even parse it, when its
bytes contain the Pixel Data tag.

One row per frame:
    file,frame,rows,columns,samples,photometric,transfer_syntax,bits_allocated,
    pixel_representation,dtype,sum,mean,min,max,status

Statistics are over all samples of that frame of `ds.pixel_array` with pydicom's
defaults: raw stored values (signed when PixelRepresentation=1), MONOCHROME1 not
inverted, palette not applied, no modality/VOI LUT, YBR_* converted to RGB. `sum` is a
float64 sum, `mean` = sum / sample count; numbers are written with repr precision.
`dtype` is the numpy dtype name without byte order (big-endian files give e.g. int16,
not >i2). `photometric` is the value stored in the file (before YBR->RGB conversion).
`transfer_syntax` is the file meta UID.

status is one of (test `status.startswith("ok")` for usable rows):
- `ok`
- `ok: float pixel data` -- Float / Double Float Pixel Data (7FE0,0008 / 7FE0,0009)
- `ok: transfer syntax inferred` -- the file meta has no Transfer Syntax UID, which
  pydicom refuses; the UID is inferred from the encoding pydicom detected while reading
  (implicit/explicit VR, endianness), written to `transfer_syntax`, and decoding retried
- `error: <message>` -- one row, frame -1, empty statistics: pydicom cannot decode the
  pixel data, cannot parse the file, or parses it without finding the Pixel Data
  element although the file's bytes contain its tag (truncated or corrupt files).

A summary is written next to OUT_CSV with the suffix .md.
"""
import csv
import io
import os
import sys
import warnings

import numpy as np
import pydicom
import pydicom.dataset
import pydicom.uid
from pydicom.errors import InvalidDicomError
from pydicom.tag import Tag

PIXEL_TAGS = {
    Tag(0x7FE0, 0x0010): "PixelData",
    Tag(0x7FE0, 0x0008): "FloatPixelData",
    Tag(0x7FE0, 0x0009): "DoubleFloatPixelData",
}
# Pixel Data tag as it appears on disk, little and big endian.
PIXEL_TAG_BYTES = (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10")
SOURCES = ("pydicom", "pydicom-data")
COLUMNS = [
    "file", "frame", "rows", "columns", "samples", "photometric", "transfer_syntax",
    "bits_allocated", "pixel_representation", "dtype", "sum", "mean", "min", "max",
    "status",
]


def short(exc, limit=160):
    msg = f"{type(exc).__name__}: {exc}"
    msg = " ".join(msg.split())
    return msg if len(msg) <= limit else msg[: limit - 3] + "..."


def read(path):
    """Return (dataset or None, read_error or None)."""
    try:
        return pydicom.dcmread(path), None
    except InvalidDicomError:
        pass  # no preamble / DICM prefix: try again forcing it
    except Exception as exc:  # noqa: BLE001
        return None, exc
    try:
        return pydicom.dcmread(path, force=True), None
    except Exception as exc:  # noqa: BLE001
        return None, exc


def attr(ds, name):
    try:
        value = ds.get(name)
    except Exception:  # noqa: BLE001 -- malformed element
        return ""
    return "" if value is None else str(value)


def num(x):
    if isinstance(x, (np.floating, float)):
        return repr(float(x))
    return repr(int(x))


def rows_for(rel, ds):
    meta = getattr(ds, "file_meta", None)
    tsyntax = ""
    if meta is not None and "TransferSyntaxUID" in meta:
        tsyntax = str(meta.TransferSyntaxUID)
    base = {
        "file": rel,
        "rows": attr(ds, "Rows"),
        "columns": attr(ds, "Columns"),
        "samples": attr(ds, "SamplesPerPixel"),
        "photometric": attr(ds, "PhotometricInterpretation"),
        "transfer_syntax": tsyntax,
        "bits_allocated": attr(ds, "BitsAllocated"),
        "pixel_representation": attr(ds, "PixelRepresentation"),
    }
    is_float = Tag(0x7FE0, 0x0010) not in ds
    inferred = False
    if not tsyntax:
        enc = getattr(ds, "original_encoding", None)
        uid = {(True, True): pydicom.uid.ImplicitVRLittleEndian,
               (False, True): pydicom.uid.ExplicitVRLittleEndian,
               (False, False): pydicom.uid.ExplicitVRBigEndian}.get(tuple(enc or ()))
        if uid is not None:
            if meta is None:
                ds.file_meta = pydicom.dataset.FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = uid
            base["transfer_syntax"] = str(uid)
            inferred = True
    try:
        nframes = int(ds.get("NumberOfFrames") or 1)
    except Exception:  # noqa: BLE001
        nframes = 1
    try:
        arr = ds.pixel_array
        spp = int(ds.get("SamplesPerPixel") or 1)
        frame_ndim = 2 if spp == 1 else 3
        if nframes > 1:
            if arr.ndim != frame_ndim + 1 or arr.shape[0] != nframes:
                raise ValueError(f"pixel_array shape {arr.shape} for NumberOfFrames={nframes}")
            frames = list(arr)
        else:
            if arr.ndim != frame_ndim:
                raise ValueError(f"pixel_array shape {arr.shape} for a single frame")
            frames = [arr]
        rows, cols = int(ds.Rows), int(ds.Columns)
        if frames[0].shape[:2] != (rows, cols):
            raise ValueError(f"frame shape {frames[0].shape} != Rows x Columns {rows}x{cols}")
    except Exception as exc:  # noqa: BLE001
        if inferred:
            base["transfer_syntax"] = ""
        return [dict(base, frame=-1, dtype="", sum="", mean="", min="", max="",
                     status="error: " + short(exc))]
    out = []
    for i, frame in enumerate(frames):
        total = float(frame.sum(dtype=np.float64))
        out.append(dict(
            base, frame=i, dtype=frame.dtype.newbyteorder("=").name, sum=repr(total),
            mean=repr(total / frame.size), min=num(frame.min()), max=num(frame.max()),
            status=("ok: float pixel data" if is_float
                    else "ok: transfer syntax inferred" if inferred else "ok"),
        ))
    return out


def error_row(rel, status):
    row = {c: "" for c in COLUMNS}
    row.update(file=rel, frame=-1, status=status)
    return row


def main():
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} DATA_DIR OUT_CSV")
    data_dir, out_csv = sys.argv[1], sys.argv[2]

    files = []
    for src in SOURCES:
        top = os.path.join(data_dir, src)
        if not os.path.isdir(top):
            sys.exit(f"missing {top}: run tools/fetch_testdata.sh {data_dir}")
        for dirpath, _, names in os.walk(top):
            for name in names:
                if name.startswith(".stamp"):
                    continue
                full = os.path.join(dirpath, name)
                files.append(os.path.relpath(full, data_dir).replace(os.sep, "/"))
    files.sort()

    all_rows = []
    counts = {src: {"files": 0, "with_pixels": 0} for src in SOURCES}
    skipped, unreadable = [], []
    for rel in files:
        src = rel.split("/", 1)[0]
        counts[src]["files"] += 1
        path = os.path.join(data_dir, rel)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds, err = read(path)
            if ds is not None:
                try:
                    has_pixels = any(t in ds for t in PIXEL_TAGS)
                except Exception:  # noqa: BLE001
                    has_pixels = False
                if has_pixels:
                    rows = rows_for(rel, ds)
                else:
                    with open(path, "rb") as f:
                        raw = f.read()
                    if not any(p in raw for p in PIXEL_TAG_BYTES):
                        skipped.append(rel)
                        continue
                    rows = [error_row(rel, "error: read: pydicom parsed no Pixel Data element "
                                           f"({len(ds)} top-level elements) though the file "
                                           "contains the (7FE0,0010) tag")]
            else:
                with open(path, "rb") as f:
                    raw = f.read()
                if not any(p in raw for p in PIXEL_TAG_BYTES):
                    skipped.append(rel)
                    continue
                unreadable.append(rel)
                rows = [error_row(rel, "error: read: " + short(err))]
        counts[src]["with_pixels"] += 1
        all_rows.extend(rows)

    os.makedirs(os.path.dirname(out_csv) or ".", exist_ok=True)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(all_rows)
    with open(out_csv, "w", newline="") as f:
        f.write(buf.getvalue())

    errors = [r for r in all_rows if r["status"].startswith("error")]
    floats = sorted({r["file"] for r in all_rows if r["status"] == "ok: float pixel data"})
    inferred = sorted({r["file"] for r in all_rows if r["status"] == "ok: transfer syntax inferred"})
    ok_files = sorted({r["file"] for r in all_rows if r["status"].startswith("ok")})
    ok_frames = sum(1 for r in all_rows if r["status"].startswith("ok"))
    multi = {}
    for r in all_rows:
        if r["status"].startswith("ok"):
            multi[r["file"]] = multi.get(r["file"], 0) + 1
    multi = {k: v for k, v in multi.items() if v > 1}

    md = [
        "# Pixel references",
        "",
        f"`{os.path.basename(out_csv)}`: per-frame statistics of the pixel data of real DICOM",
        "test objects as decoded by pydicom "
        f"{pydicom.__version__} with the pylibjpeg plugins ({plugin_versions()}).",
        "See the docstring of `tools/make_references.py` for the exact definitions",
        "(raw stored values, MONOCHROME1 not inverted, palette not applied, YBR -> RGB).",
        "",
        "## Regenerate",
        "",
        "```sh",
        "tools/fetch_testdata.sh .deps/testdata",
        "tools/make_venv.sh .deps/venv",
        ".deps/venv/bin/python tools/make_references.py .deps/testdata tests/data/pixel_references.csv",
        "```",
        "",
        "## Counts",
        "",
        "| source | files | with pixel data |",
        "| --- | --- | --- |",
    ]
    for src in SOURCES:
        md.append(f"| {src} | {counts[src]['files']} | {counts[src]['with_pixels']} |")
    md += [
        "",
        f"- files with pixel data decoded by pydicom: {len(ok_files)} ({ok_frames} frame rows)",
        f"- files pydicom could not decode: {len(errors)}",
        f"- multi-frame files: {len(multi)} ("
        + ", ".join(f"`{k}` {v}" for k, v in sorted(multi.items())) + ")",
        f"- float / double float pixel data: {len(floats)}"
        + (" (" + ", ".join(f"`{f}`" for f in floats) + ")" if floats else ""),
        f"- decoded only after inferring the missing Transfer Syntax UID: {len(inferred)}"
        + (" (" + ", ".join(f"`{f}`" for f in inferred) + ")" if inferred else ""),
        f"- files skipped (no pixel data, or not DICOM): {len(skipped)}",
        "",
        "## Files pydicom itself could not decode",
        "",
        "These have one row with frame -1 and status `error: ...`; a decoder under test",
        "should reject them with an error (or, if it does decode them, the result has no",
        "pydicom reference).",
        "",
    ]
    for r in errors:
        msg = r["status"].replace("|", "\\|")
        md.append(f"- `{r['file']}`: {msg}")
    md.append("")
    md_path = os.path.splitext(out_csv)[0] + ".md"
    with open(md_path, "w") as f:
        f.write("\n".join(md))

    print(f"wrote {out_csv}: {len(all_rows)} rows, {len(ok_files)} files ok, "
          f"{len(errors)} errors, {len(skipped)} skipped; summary {md_path}")


def plugin_versions():
    from importlib.metadata import version
    names = ["pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle"]
    return ", ".join(f"{n} {version(n)}" for n in names)


if __name__ == "__main__":
    main()
