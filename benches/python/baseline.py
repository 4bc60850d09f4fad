#!/usr/bin/env python3
"""Python baseline for `make bench`: the batch pipeline as a capable team would
write it with the usual libraries, to compare nightscreen against.

    baseline.py --model models/dr-screen.onnx --card models/dr-screen.toml \
        --input DIR --out OUTDIR [--workers N] [--batch-size 8] \
        [--decode pixel_array|draft] [--same-work configs/desp.toml]

Walks DIR for *.dcm files, decodes each frame with pydicom (+ pylibjpeg /
Pillow), preprocesses it as the model card's [input] section says (the whole
frame stretched to width x height, value = (pixel / max * scale - mean) / std,
NCHW or NHWC, RGB or BGR), runs ONNX Runtime in a multiprocessing Pool (one
single-threaded InferenceSession per worker process, batches of --batch-size)
and writes OUTDIR/images.parquet with the columns of nightscreen's images
table. A file that cannot be read or decoded is reported (path and reason) on
stderr and skipped; so is one the model card does not accept.

Decode modes:
  pixel_array  `ds.pixel_array` (pydicom picks its JPEG plugin: pylibjpeg, else
               Pillow), full resolution RGB uint8, then Pillow BILINEAR resize.
               What most teams write.
  draft        JPEG frames are handed to Pillow with `draft('RGB', size)`, so
               libjpeg-turbo decodes them DCT-scaled to the smallest size
               covering the model input in both axes (1600x1200 -> 800x600 for
               384x384), then resized as above. Other transfer syntaxes fall
               back to pixel_array.

--same-work CONFIG also does what nightscreen does beyond the DR model with
that config: the card's domain gate ([domain]) on the DR model's own tensor
(an image below its threshold is not scored), and the card's second look
([second_look]) on each image the config's [triage.desp.r3_second_look]
picks (gradable, p(r3) from `from` up to r3_at_least): the full frame (kept
from pixel_array; decoded again by pixel_array in draft mode) stretched to
the companion's input and scored. Its answer is the `second_look_score`
column.

The last line on stdout is one JSON object:
  {"images", "seconds", "images_per_second", "workers", "decode", ...}
`seconds` runs from the first line of this script (after interpreter start,
before numpy / pydicom / onnxruntime / pyarrow are imported) until the Parquet
file is closed.
"""

import time

T0 = time.perf_counter()

import os  # noqa: E402

# One thread per worker process: the Pool is the parallelism. Without this a
# BLAS-backed numpy call (pydicom's YBR -> RGB matmul) may start a thread per
# core in every worker. Must be set before numpy is imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import hashlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import multiprocessing as mp  # noqa: E402
import secrets  # noqa: E402
import sys  # noqa: E402
import tomllib  # noqa: E402
import traceback  # noqa: E402

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import pydicom  # noqa: E402
from pydicom.encaps import generate_frames  # noqa: E402
from pydicom.uid import JPEGBaseline8Bit, JPEGExtended12Bit  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from pseudonym import load_key, pseudonym  # noqa: E402

KEY = load_key()
SOFTWARE_VERSION = "python-baseline 0.1.0"
ROW_GROUP_ROWS = 8192

# The same column names, order and types as nightscreen's images table
# (src/sink/tables.rs images_batch); every column nullable, as there.
SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("patient_pseudonym", pa.string()),
        ("study_pseudonym", pa.string()),
        ("series_pseudonym", pa.string()),
        ("instance_pseudonym", pa.string()),
        ("frame", pa.int32()),
        ("file_pseudonym", pa.string()),
        ("sop_class_uid", pa.string()),
        ("modality", pa.string()),
        ("photometric", pa.string()),
        ("transfer_syntax", pa.string()),
        ("laterality", pa.string()),
        ("field", pa.string()),
        ("study_datetime", pa.timestamp("us")),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("stored_mean", pa.float64()),
        ("stored_min", pa.float64()),
        ("stored_max", pa.float64()),
        ("model_id", pa.string()),
        ("model_version", pa.string()),
        ("model_sha256", pa.string()),
        ("labels", pa.list_(pa.string())),
        ("outputs", pa.list_(pa.float32())),
        ("top_label", pa.string()),
        ("top_score", pa.float32()),
        ("band", pa.string()),
        ("image_grade", pa.string()),
        ("scored_at", pa.timestamp("us", tz="UTC")),
        ("software_version", pa.string()),
        ("config_sha256", pa.string()),
    ]
)
# With --same-work: the domain gate's verdict and the second look's score.
SAME_WORK_COLUMNS = [("in_domain", pa.bool_()), ("second_look_score", pa.float32())]

# JPEG transfer syntaxes Pillow can open directly (8-bit DCT processes).
DRAFT_SYNTAXES = {JPEGBaseline8Bit, JPEGExtended12Bit}


class Skip(Exception):
    """The file is readable but not for this model (modality, colour...)."""


# --------------------------------------------------------------------------
# Per-process state (set by the Pool initializer)
# --------------------------------------------------------------------------

_W = {}


def session(model_path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model_path, sess_options=opts, providers=["CPUExecutionProvider"])


def input_of(spec):
    """What to_tensor needs of a card's [input]."""
    channels = int(spec["channels"])
    mean = np.asarray(spec.get("mean", [0.0] * channels), dtype=np.float32)
    std = np.asarray(spec.get("std", [1.0] * channels), dtype=np.float32)
    return dict(
        input_name=spec["name"],
        width=int(spec["width"]),
        height=int(spec["height"]),
        channels=channels,
        scale=float(spec.get("scale", 1.0)),
        mean=mean,
        std=std,
        nchw=spec.get("layout", "NCHW").upper() == "NCHW",
        bgr=spec.get("channel_order", "RGB").upper() == "BGR",
    )


def init_worker(model_path, spec, accepts, decode_mode, batch_size, extra):
    _W.update(input_of(spec), sess=session(model_path), accepts=accepts, decode=decode_mode, batch_size=batch_size)
    gate, look = extra.get("gate"), extra.get("look")
    _W["gate"] = gate and dict(sess=session(gate["model"]), threshold=gate["threshold"], output=gate["output"])
    _W["look"] = look and dict(input_of(look["spec"]), sess=session(look["model"]), **look["band"])


# --------------------------------------------------------------------------
# Header fields
# --------------------------------------------------------------------------


def text(ds, keyword):
    v = ds.get(keyword, "")
    if v is None:
        return ""
    return str(v).strip("\0 ").strip()


def fundus_field(ds):
    for kw in ("ImageComments", "SeriesDescription", "AcquisitionDeviceProcessingDescription"):
        t = text(ds, kw).lower()
        if "macula" in t:
            return "macula"
        if "disc" in t or "disk" in t:
            return "disc"
    return ""


def study_datetime(date, time_):
    try:
        d = dt.datetime.strptime(date[:8], "%Y%m%d")
    except ValueError:
        return None
    digits = ""
    for ch in time_:
        if not ch.isdigit():
            break
        digits += ch

    def two(i):
        s = digits[i : i + 2]
        return int(s) if len(s) == 2 else 0

    h, m, s = two(0), two(2), min(two(4), 59)
    if h > 23 or m > 59:
        return d
    return d.replace(hour=h, minute=m, second=s)


def header_of(ds, path):
    meta = getattr(ds, "file_meta", None)
    sop_class = text(ds, "SOPClassUID") or (text(meta, "MediaStorageSOPClassUID") if meta else "")
    sop_inst = text(ds, "SOPInstanceUID") or (text(meta, "MediaStorageSOPInstanceUID") if meta else "")
    return {
        # Keyed pseudonyms, as nightscreen writes them (tools/pseudonym.py).
        "patient_pseudonym": pseudonym(KEY, "patient", text(ds, "PatientID")),
        "study_pseudonym": pseudonym(KEY, "study", text(ds, "StudyInstanceUID")),
        "series_pseudonym": pseudonym(KEY, "series", text(ds, "SeriesInstanceUID")),
        "instance_pseudonym": pseudonym(KEY, "instance", sop_inst),
        "file_pseudonym": pseudonym(KEY, "file", os.fsencode(path)),
        "path": path,
        "sop_class_uid": sop_class,
        "modality": text(ds, "Modality"),
        "photometric": text(ds, "PhotometricInterpretation"),
        "transfer_syntax": text(meta, "TransferSyntaxUID") if meta else "",
        "laterality": text(ds, "ImageLaterality") or text(ds, "Laterality"),
        "field": fundus_field(ds),
        "study_datetime": study_datetime(text(ds, "StudyDate"), text(ds, "StudyTime")),
        "width": int(ds.Columns),
        "height": int(ds.Rows),
    }


def check_accepted(ds, accepts):
    if len(ds) == 0:
        raise ValueError("empty dataset: truncated or not a DICOM file")
    mods = accepts.get("modalities")
    if mods and text(ds, "Modality") not in mods:
        raise Skip(f"modality {text(ds, 'Modality')!r} not accepted by the model card")
    pis = accepts.get("photometric")
    if pis and text(ds, "PhotometricInterpretation") not in pis:
        raise Skip(f"photometric {text(ds, 'PhotometricInterpretation')!r} not accepted by the model card")
    if "PixelData" not in ds:
        raise Skip("no pixel data")


# --------------------------------------------------------------------------
# Decode: each yields (frame index, HxWxC uint8 ndarray or PIL image, stats)
# --------------------------------------------------------------------------


def decode_pixel_array(ds):
    """Full-resolution frames through pydicom's own decoders (RGB out)."""
    arr = ds.pixel_array
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames == 1:
        arr = arr[np.newaxis]
    if arr.dtype != np.uint8:
        raise Skip(f"{arr.dtype} pixels: the baseline handles 8-bit photographs only")
    for i in range(arr.shape[0]):
        yield i, arr[i]


def _jpeg_markers(data):
    """(JFIF present, Adobe present, component ids) from the markers before SOS."""
    jfif = adobe = False
    ids = []
    pos = 2
    n = len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            pos += 1
            continue
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        length = (data[pos + 2] << 8) | data[pos + 3]
        seg = data[pos + 4 : pos + 2 + length]
        if marker == 0xE0 and seg.startswith(b"JFIF\0"):
            jfif = True
        elif marker == 0xEE and seg.startswith(b"Adobe"):
            adobe = True
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and len(seg) >= 6:
            ids = [seg[6 + 3 * k] for k in range(seg[5]) if 6 + 3 * k < len(seg)]
        elif marker in (0xDA, 0xD9):
            break
        pos += 2 + length
    return jfif, adobe, ids


def decode_draft(ds, size):
    """JPEG frames decoded by libjpeg-turbo at a reduced DCT scale."""
    ts = ds.file_meta.TransferSyntaxUID
    if ts not in DRAFT_SYNTAXES or int(ds.get("BitsStored", 8)) != 8:
        yield from decode_pixel_array(ds)
        return
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    rgb_pi = text(ds, "PhotometricInterpretation") == "RGB"
    for i, data in enumerate(generate_frames(ds.PixelData, number_of_frames=frames)):
        img = Image.open(io.BytesIO(data), formats=("JPEG",))
        # DICOM RGB stored without JFIF/Adobe markers and without 'RGB'
        # component ids holds untransformed RGB; libjpeg would treat it as
        # YCbCr (pydicom's SC_jpeg_no_color_transform.dcm), so ask for the
        # raw components and relabel them.
        raw = False
        if rgb_pi and img.mode == "RGB":
            jfif, adobe, ids = _jpeg_markers(data[:4096])
            raw = not jfif and not adobe and ids not in ([82, 71, 66], [114, 103, 98])
        img.draft("YCbCr" if raw else img.mode, size)
        img.load()
        if raw:
            img = Image.frombytes("RGB", img.size, img.tobytes())
        if img.mode not in ("RGB", "L"):
            img = img.convert("RGB")
        yield i, img


# --------------------------------------------------------------------------
# Preprocess
# --------------------------------------------------------------------------


def to_tensor(frame, w=None):
    """HxWxC uint8 (or PIL image) -> (model tensor without batch dim, stats),
    for the DR model or, given its input_of(), another."""
    w = w or _W
    # Statistics of the decoded samples (pydicom's pixel_array values; for
    # draft decoding those of the reduced frame, as nightscreen records them).
    if isinstance(frame, Image.Image):
        img, px = frame, np.asarray(frame)
    else:
        img, px = Image.fromarray(frame), frame
    stats = (float(px.mean()), float(px.min()), float(px.max()))
    want = w["channels"]
    if want == 3 and img.mode != "RGB":
        img = img.convert("RGB")
    elif want == 1 and img.mode != "L":
        img = img.convert("L")  # ITU-R 601-2 luma
    if img.size != (w["width"], w["height"]):
        img = img.resize((w["width"], w["height"]), Image.BILINEAR)
    x = np.asarray(img, dtype=np.float32)
    if x.ndim == 2:
        x = x[:, :, np.newaxis]
    if w["bgr"] and want == 3:
        x = x[:, :, ::-1]
    # (v / 255 * scale - mean) / std, folded into one multiply-add.
    a = w["scale"] / (255.0 * w["std"])
    b = -w["mean"] / w["std"]
    x = x * a + b
    if w["nchw"]:
        x = x.transpose(2, 0, 1)
    return np.ascontiguousarray(x, dtype=np.float32), stats


# --------------------------------------------------------------------------
# The task: a chunk of files -> rows
# --------------------------------------------------------------------------


def process_chunk(paths):
    """Decodes, preprocesses and scores a chunk of files in this worker.

    Returns (rows, errors, skipped): rows are tuples of per-image values;
    errors / skipped are (path, reason) pairs.
    """
    w = _W
    size = (w["width"], w["height"])
    pending = []  # (header, frame index, tensor, stats, full frame or None)
    rows, errors, skipped = [], [], []

    def look_at(hdr, i, frame):
        """The second look's p(finding): the full frame (decoded again in
        draft mode) stretched to the companion's input."""
        if frame is None:
            frame = dict(decode_pixel_array(pydicom.dcmread(hdr["path"])))[i]
        tensor, _ = to_tensor(frame, w["look"])
        look = w["look"]
        return float(look["sess"].run(None, {look["input_name"]: tensor[np.newaxis]})[0][0, look["output"]])

    def flush():
        if not pending:
            return
        batch = np.stack([p[2] for p in pending])
        try:
            inside = np.ones(len(pending), dtype=bool)
            if w["gate"]:
                gate = w["gate"]
                inside = gate["sess"].run(None, {w["input_name"]: batch})[0][:, gate["output"]] >= gate["threshold"]
            probs = iter(w["sess"].run(None, {w["input_name"]: batch[inside]})[0] if inside.any() else [])
            scored = []
            for (hdr, i, _, stats, frame), ok in zip(pending, inside):
                out = next(probs).astype(np.float32).tolist() if ok else []
                look = w["look"]
                wanted = (look and out and out[look["gradable_at"]] >= look["gradable"]
                          and look["from"] <= out[look["r3"]] < look["below"])
                scored.append((hdr, i, stats, out, bool(ok) if w["gate"] else None,
                               look_at(hdr, i, frame) if wanted else None))
        except Exception as e:  # a batch that cannot be scored: report each image
            for hdr, *_ in pending:
                errors.append((hdr["path"], f"inference failed: {e}"))
            pending.clear()
            return
        scored_at = dt.datetime.now(dt.timezone.utc)
        rows.extend((hdr, i, stats, out, scored_at, inside, look) for hdr, i, stats, out, inside, look in scored)
        pending.clear()

    for path in paths:
        try:
            ds = pydicom.dcmread(path)
            check_accepted(ds, w["accepts"])
            hdr = header_of(ds, path)
            frames = decode_draft(ds, size) if w["decode"] == "draft" else decode_pixel_array(ds)
            # The full frame waits with its tensor for the second look.
            keep = w["look"] and w["decode"] != "draft"
            tensors = [(hdr, i, *to_tensor(f), f if keep else None) for i, f in frames]
        except Skip as e:
            skipped.append((path, str(e)))
            continue
        except Exception as e:  # unreadable / undecodable: report and go on
            errors.append((path, f"{type(e).__name__}: {e}"))
            continue
        for t in tensors:
            pending.append(t)
            if len(pending) >= w["batch_size"]:
                flush()
    flush()
    return rows, errors, skipped


def chunks(seq, n):
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def find_dicoms(root):
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if f.lower().endswith(".dcm") and not f.startswith("."):
                found.append(os.path.join(dirpath, f))
    return found


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class TableWriter:
    """Rows -> Parquet row groups as they fill (bounded memory)."""

    def __init__(self, path, stamp, same_work):
        self.schema = pa.schema(list(SCHEMA) + (SAME_WORK_COLUMNS if same_work else []))
        # zstd and list children named "item", as nightscreen (arrow-rs) writes.
        self.writer = pq.ParquetWriter(path, self.schema, compression="zstd", use_compliant_nested_type=False)
        self.stamp = stamp
        self.buf = []
        self.count = 0

    def add(self, rows):
        self.buf.extend(rows)
        if len(self.buf) >= ROW_GROUP_ROWS:
            self.flush()

    def flush(self):
        if not self.buf:
            return
        s = self.stamp
        labels = s["labels"]
        cols = {name: [] for name in self.schema.names}
        for hdr, frame, stats, outputs, scored_at, inside, look in self.buf:
            for k in ("patient_pseudonym", "study_pseudonym", "series_pseudonym", "instance_pseudonym", "file_pseudonym", "sop_class_uid",
                      "modality", "photometric", "transfer_syntax", "laterality", "field",
                      "study_datetime", "width", "height"):
                cols[k].append(hdr[k])
            cols["frame"].append(frame)
            cols["stored_mean"].append(stats[0])
            cols["stored_min"].append(stats[1])
            cols["stored_max"].append(stats[2])
            cols["outputs"].append(outputs)
            top = max(range(len(outputs)), key=outputs.__getitem__) if outputs else None
            cols["top_label"].append(labels[top] if top is not None and top < len(labels) else None)
            cols["top_score"].append(outputs[top] if top is not None else None)
            cols["scored_at"].append(scored_at)
            if "in_domain" in cols:
                cols["in_domain"].append(inside)
                cols["second_look_score"].append(look)
        n = len(self.buf)
        for k in ("run_id", "model_id", "model_version", "model_sha256", "software_version", "config_sha256"):
            cols[k] = [s[k]] * n
        cols["labels"] = [labels] * n
        cols["band"] = [None] * n
        cols["image_grade"] = [None] * n
        table = pa.Table.from_pydict(cols, schema=self.schema)
        self.writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        self.count += n
        self.buf = []

    def close(self):
        self.flush()
        self.writer.close()


def same_work(config_path, card, models_dir):
    """The gate and second look the DR card names, and the band of images
    the DESP config looks at again."""
    with open(config_path, "rb") as f:
        desp = tomllib.load(f)["triage"]["desp"]
    cards = lambda name: tomllib.loads(open(os.path.join(models_dir, f"{name}.toml")).read())
    extra = {}
    labels = card["output"]["labels"]
    if "domain" in card:
        spec = card["domain"]
        gate = cards(spec["model"])
        extra["gate"] = {"model": os.path.join(models_dir, gate["file"]),
                         "output": gate["output"]["labels"].index(spec["label"]),
                         "threshold": float(spec.get("at_least", gate["thresholds"][spec["label"]]))}
    if "second_look" in card and "r3_second_look" in desp:
        spec = card["second_look"]
        look = cards(spec["model"])
        band = {"from": desp["r3_second_look"]["from"], "below": desp["r3_at_least"],
                "gradable": desp["gradable_at_least"], "r3": labels.index("r3"), "gradable_at": labels.index("gradable"),
                "output": look["output"]["labels"].index(spec["label"])}
        extra["look"] = {"model": os.path.join(models_dir, look["file"]), "spec": look["input"], "band": band}
    return extra


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="ONNX file")
    ap.add_argument("--card", required=True, help="model card TOML ([input], [output], [accepts])")
    ap.add_argument("--input", required=True, help="folder walked for *.dcm")
    ap.add_argument("--out", required=True, help="output folder (images.parquet)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--decode", choices=("pixel_array", "draft"), default="pixel_array")
    ap.add_argument("--same-work", metavar="CONFIG", help="also the card's domain gate and the config's second look")
    args = ap.parse_args(argv)
    if args.workers < 1 or args.batch_size < 1:
        ap.error("--workers and --batch-size must be at least 1")

    with open(args.card, "rb") as f:
        card_bytes = f.read()
    card = tomllib.loads(card_bytes.decode("utf-8"))
    spec = card["input"]
    labels = list(card["output"]["labels"])
    model_sha = sha256_file(args.model)
    if card.get("sha256") and card["sha256"] != model_sha:
        print(f"error: {args.model} has sha256 {model_sha}, the card says {card['sha256']}", file=sys.stderr)
        return 2

    started = dt.datetime.now(dt.timezone.utc)
    config = json.dumps({"card_sha256": hashlib.sha256(card_bytes).hexdigest(), "decode": args.decode,
                         "batch_size": args.batch_size, "software": SOFTWARE_VERSION}, sort_keys=True)
    stamp = {
        "run_id": started.strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(2),
        "model_id": card.get("id", ""),
        "model_version": card.get("version", ""),
        "model_sha256": model_sha,
        "labels": labels,
        "software_version": SOFTWARE_VERSION,
        "config_sha256": hashlib.sha256(config.encode()).hexdigest(),
    }

    paths = find_dicoms(os.path.abspath(args.input))
    os.makedirs(args.out, exist_ok=True)
    out_path = os.path.join(args.out, "images.parquet")
    writer = TableWriter(out_path + ".partial", stamp, bool(args.same_work))
    n_err = n_skip = 0
    # Chunks of one batch of files: small enough that both workers always
    # have work (one decoding while the other runs the model), large enough
    # that each session.run sees a full batch.
    extra = same_work(args.same_work, card, os.path.dirname(os.path.abspath(args.card))) if args.same_work else {}
    init = (os.path.abspath(args.model), spec, card.get("accepts", {}), args.decode, args.batch_size, extra)
    with mp.Pool(args.workers, initializer=init_worker, initargs=init) as pool:
        for rows, errors, skipped in pool.imap_unordered(process_chunk, chunks(paths, args.batch_size)):
            writer.add(rows)
            for p, why in errors:
                print(f"error: {p}: {why}", file=sys.stderr)
            for p, why in skipped:
                print(f"skipped: {p}: {why}", file=sys.stderr)
            n_err += len(errors)
            n_skip += len(skipped)
    writer.close()
    os.replace(out_path + ".partial", out_path)
    seconds = time.perf_counter() - T0
    n = writer.count
    print(json.dumps({
        "images": n,
        "seconds": round(seconds, 3),
        "images_per_second": round(n / seconds, 2) if seconds > 0 else None,
        "workers": args.workers,
        "decode": args.decode,
        "batch_size": args.batch_size,
        "files": len(paths),
        "errors": n_err,
        "skipped": n_skip,
        "timed_from": "script start (imports included, interpreter start excluded)",
    }))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception:
        traceback.print_exc()
        sys.exit(1)
