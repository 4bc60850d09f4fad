#!/usr/bin/env python3
"""Runs the real photographs through nightscreen and prints what it made of each.

Usage: photo_report.py OP_DIR [--run RUNDIR] [--bin PATH] [--config FILE]
                       [--key-file FILE] [--no-run] [--json FILE]

OP_DIR holds the photographs as tools/wrap_op.py wrapped them (OP_DIR/fundus/,
OP_DIR/other/). The release binary screens them:
  nightscreen run --input OP_DIR --out RUNDIR --config configs/desp.toml --key-file KEY --force
with ORT_DYLIB_PATH defaulting to .deps/onnxruntime/libonnxruntime.so; then the
Parquet tables are read with pyarrow and joined to each file through the keyed
pseudonyms of its study and instance UIDs (tools/pseudonym.py). One Markdown row
per image: file, group (fundus/other), the study's band and reason, the domain
gate's p(inside), the eye's p(gradable), the eye's and the image's grade and the
image's p(r0..r3), p(m1) (empty for an image the gate ruled out: never scored).

The key is --key-file, else $NIGHTSCREEN_KEY_FILE, else RUNDIR.key (made with
`nightscreen keygen` on first use). --no-run reads an existing RUNDIR.
--json writes the real-photograph figures a model card's [evaluation] carries
(real_*; tests/photos.rs reproduces them): of the fundus photographs judged
gradable (tools/photos-judged.tsv), how many the gate recognised and how many
were graded (an R/M grade, not U or OOD); of the other images, how many were
recognised or graded (both should be 0); and whether scikit-image's retina.jpg
(a normal eye) was graded and not URGENT (1) or not (0).
Runs in .deps/venv (pydicom, pyarrow).
"""

import argparse
import csv
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.dataset as pads
import pydicom

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from pseudonym import pseudonym  # noqa: E402


# Said of every study here (one image each, a synthetic-only model): left out of the table.
BOILERPLATE = ("; only one eye imaged", "; model not validated for clinical use")


def run_binary(args, key_file):
    env = dict(os.environ)
    env.setdefault("ORT_DYLIB_PATH", str(ROOT / ".deps/onnxruntime/libonnxruntime.so"))
    env.setdefault("XDG_CACHE_HOME", str(ROOT / ".deps/cache"))
    cmd = [str(args.bin), "run", "--input", str(args.op_dir), "--out", str(args.run)]
    cmd += ["--config", str(args.config), "--key-file", str(key_file), "--force", "--quiet"]
    print("$ " + " ".join(cmd), file=sys.stderr)
    # Exit 1 means some files could not be read: still a report.
    res = subprocess.run(cmd, env=env)
    if res.returncode not in (0, 1):
        sys.exit(f"photo_report: nightscreen run exited {res.returncode}")


def table(run, name):
    path = run / name
    if not path.is_dir():
        return []
    return pads.dataset(path, format="parquet").to_table().to_pylist()


def wrapped(op_dir):
    """One entry per wrapped DICOM: its path, group and UIDs."""
    out = []
    for path in sorted(op_dir.rglob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        rel = path.relative_to(op_dir).as_posix()
        out.append(
            {
                "path": path,
                "file": rel,
                "group": rel.split("/", 1)[0] if "/" in rel else "",
                "study_uid": str(ds.StudyInstanceUID),
                "sop_uid": str(ds.SOPInstanceUID),
                "laterality": str(ds.get("ImageLaterality", "")),
            }
        )
    return out


def judged():
    """tools/photos-judged.tsv: wrapped file name (fundus/retina_jpg.dcm) -> judgement."""
    with open(HERE / "photos-judged.tsv", encoding="utf-8", newline="") as f:
        rows = csv.reader((line for line in f if not line.startswith("#")), delimiter="\t")
        return {"fundus/" + r[0].replace(".", "_") + ".dcm": r[1] for r in rows if r}


def graded(grade):
    """An R/M grade (R1M0, ...), not U (ungradable) or OOD (outside the domain)."""
    return bool(grade) and grade.startswith("R")


def fmt(p):
    return "" if p is None else f"{p:.2f}"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("op_dir", type=Path)
    p.add_argument("--run", type=Path, help="nightscreen OUT folder (default: OP_DIR.run)")
    p.add_argument(
        "--bin", type=Path, default=Path(os.environ.get("NIGHTSCREEN_BIN", ROOT / "target/release/nightscreen"))
    )
    p.add_argument("--config", type=Path, default=ROOT / "configs/desp.toml")
    p.add_argument("--key-file", type=Path, default=os.environ.get("NIGHTSCREEN_KEY_FILE"))
    p.add_argument("--no-run", action="store_true", help="read an existing RUNDIR instead of running")
    p.add_argument("--json", type=Path, help="write the real_* figures for a model card here")
    args = p.parse_args()
    args.op_dir = args.op_dir.resolve()
    args.run = (args.run or args.op_dir.with_name(args.op_dir.name + ".run")).resolve()
    key_file = Path(args.key_file) if args.key_file else args.run.with_name(args.run.name + ".key")
    if not args.no_run:
        if not args.bin.is_file():
            sys.exit(f"photo_report: no binary at {args.bin} (make build, or --bin / NIGHTSCREEN_BIN)")
        if not key_file.is_file():
            subprocess.run([str(args.bin), "keygen", "--out", str(key_file)], check=True, capture_output=True)
        run_binary(args, key_file)
    key = bytes.fromhex(key_file.read_text().strip())

    studies = {r["study_pseudonym"]: r for r in table(args.run, "studies")}
    images = {r["instance_pseudonym"]: r for r in table(args.run, "images")}
    problems = {}
    for name in ("errors", "skipped"):
        for r in table(args.run, name):
            for k in ("instance_pseudonym", "file_pseudonym"):
                if r.get(k):
                    problems[r[k]] = f"{name[:-1] if name == 'errors' else 'skipped'}: {r['message']}"

    print("| file | group | band | reason | p(inside) | p(gradable) | eye grade | image grade | p(r0/r1/r2/r3) | p(m1) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    bands = Counter()
    judgement = judged()
    figures = Counter()
    for w in wrapped(args.op_dir):
        study = studies.get(pseudonym(key, "study", w["study_uid"]), {})
        inst = pseudonym(key, "instance", w["sop_uid"])
        image = images.get(inst, {})
        eye = {"R": "right", "L": "left"}.get(w["laterality"], "")
        outputs = image.get("outputs")
        probs = dict(zip(image.get("labels") or [], outputs, strict=True)) if outputs is not None else {}
        problem = problems.get(inst) or problems.get(pseudonym(key, "file", str(w["path"])), "")
        band = study.get("band", "(none)")
        bands[(w["group"], band)] += 1
        group = "fundus_gradable" if judgement.get(w["file"]) == "gradable" else w["group"]
        if group in ("fundus_gradable", "other"):
            figures[f"real_{group}_images"] += 1
            figures[f"real_{group}_recognised"] += bool(image.get("in_domain"))
            figures[f"real_{group}_graded"] += graded(image.get("image_grade"))
        if w["file"] == "fundus/retina_jpg.dcm":  # the named check: a normal eye, CC0
            figures["real_retina_graded_not_urgent"] = int(graded(image.get("image_grade")) and band != "URGENT")
        reason = study.get("reason") or problem or ""
        for tail in BOILERPLATE:
            reason = reason.replace(tail, "")
        reason = reason.replace("|", "\\|")
        rs = "/".join(fmt(probs.get(k)) for k in ("r0", "r1", "r2", "r3")) if probs else ""
        eye_grade = study.get(f"{eye}_eye_grade") or ""
        print(
            f"| {w['file']} | {w['group']} | {band} | {reason} | {fmt(image.get('domain_score'))} "
            f"| {fmt(study.get(f'{eye}_eye_p_gradable'))} "
            f"| {eye_grade} | {image.get('image_grade') or ''} | {rs} | {fmt(probs.get('m1'))} |"
        )
    print()
    print(f"(reasons shortened: every one also ends {''.join(BOILERPLATE)!r} where nightscreen wrote it)")
    for group in sorted({g for g, _ in bands}):
        counts = ", ".join(f"{b} {n}" for (g, b), n in sorted(bands.items()) if g == group)
        print(f"{group}: {sum(n for (g, _), n in bands.items() if g == group)} images: {counts}")
    if args.json:
        keys = [f"real_{g}_{k}" for g in ("fundus_gradable", "other") for k in ("images", "recognised", "graded")]
        keys.append("real_retina_graded_not_urgent")
        args.json.write_text(json.dumps({k: figures[k] for k in keys}, indent=2) + "\n")


if __name__ == "__main__":
    main()
