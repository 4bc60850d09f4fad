#!/usr/bin/env python3
"""Wraps photographs as Ophthalmic Photography DICOM, the way a fundus camera sends them.

Usage: wrap_op.py SRC_DIR OUT_DIR [--native] [--no-check]

Every JPEG, PNG or DICOM image under SRC_DIR becomes one OP 8 Bit Image
(SOP class 1.2.840.10008.5.1.4.1.1.77.1.5.1) under OUT_DIR, at the same
relative folder, named after its source (`fundus/retina.jpg` ->
`fundus/retina_jpg.dcm`). Each image is its own study of its own fake patient,
with deterministic UIDs and ids (the same source path gives the same object),
and carries what nightscreen's ingest reads: modality OP, ImageLaterality and
Laterality (R or L), the field in SeriesDescription (`MACULA` or `DISC`) and
ImageComments (`DESP field 1 MACULA`), study/series/instance UIDs, patient id
and name, study date and time. ImageComments also names the source file.

Encoding, as cameras do:
- default: JPEG Baseline (1.2.840.10008.1.2.4.50), YBR_FULL_422, one fragment
  behind a basic offset table. A source that already is a baseline 8-bit
  YCbCr JPEG with 4:2:0 or 4:2:2 chroma (a JPEG file, or the single frame of a
  JPEG-baseline DICOM) keeps its bitstream byte for byte; anything else is
  decoded and encoded with Pillow at quality 95, 4:2:2.
- `--native`: Explicit VR Little Endian, RGB, PlanarConfiguration 0 (as some
  Topcon cameras store it).

Laterality and field come from SRC_DIR/photos.tsv (written by
tools/fetch_photos.sh) when it lists the file; otherwise the laterality is a
fixed function of the path and the field is MACULA. Grey sources become RGB
with equal channels, an alpha channel is dropped, and a multi-frame DICOM
gives its first frame.

Each output is read back with pydicom (header and pixels) and, if dciodvfy
(dicom3tools) is installed, checked by it; errors fail the run (`--no-check`
skips both). Needs pydicom and Pillow (.deps/venv).
"""

import argparse
import csv
import hashlib
import io
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import (
    JPEG2000,
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSNearLossless,
)

OP_8BIT = "1.2.840.10008.5.1.4.1.1.77.1.5.1"
SUFFIXES = {".jpg", ".jpeg", ".png", ".dcm"}
# What fetch_photos.sh copies beside the images.
LIST_NAME = "photos.tsv"
LIST_COLS = [
    "group",
    "file",
    "package",
    "version",
    "dist",
    "member",
    "laterality",
    "field",
    "licence",
    "training",
    "shows",
]
STUDY_DATE = "20261201"
JPEG_QUALITY = 95
# Transfer syntaxes whose pixels may have been through lossy compression,
# with the method a LossyImageCompressionMethod names.
LOSSY_TS = {
    JPEGBaseline8Bit: "ISO_10918_1",
    JPEGExtended12Bit: "ISO_10918_1",
    JPEG2000: "ISO_15444_1",
    JPEGLSNearLossless: "ISO_14495_1",
}


def digest(*parts):
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def uid(rel, kind):
    """A deterministic UID under 2.25 (a UUID-derived root needs no registration)."""
    return "2.25." + str(int(digest("nightscreen wrap_op", rel, kind)[:32], 16))


def jpeg_frame_info(data):
    """(baseline, components, sampling, adobe_transform) of a JPEG bitstream, or None.

    sampling is the luma (h, v) factors when both chroma components are 1x1,
    else None; adobe_transform is the APP14 transform flag, if any.
    """
    if data[:2] != b"\xff\xd8":
        return None
    i, adobe = 2, None
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        seg = data[i + 4 : i + 2 + length]
        if marker == 0xEE and seg[:5] == b"Adobe" and len(seg) >= 12:
            adobe = seg[11]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            precision, ncomp = seg[0], seg[5]
            comps = [(seg[6 + 3 * k], seg[7 + 3 * k] >> 4, seg[7 + 3 * k] & 15) for k in range(ncomp)]
            sampling = None
            if ncomp == 3 and all((h, v) == (1, 1) for _, h, v in comps[1:]):
                sampling = (comps[0][1], comps[0][2])
            ids = bytes(c[0] for c in comps)
            baseline = marker == 0xC0 and precision == 8
            return baseline, ncomp, sampling, adobe, ids
        i += 2 + length
    return None


def keepable_jpeg(data):
    """True when a camera would send this bitstream as YBR_FULL_422 JPEG baseline."""
    info = jpeg_frame_info(data)
    if info is None:
        return False
    baseline, ncomp, sampling, adobe, ids = info
    # Adobe transform 0 or component ids R, G, B mean RGB, not YCbCr.
    ycc = adobe != 0 and ids != b"RGB"
    return baseline and ncomp == 3 and ycc and sampling in ((2, 1), (2, 2))


def encode_jpeg(rgb):
    buf = io.BytesIO()
    # subsampling=1 is 4:2:2; Pillow writes baseline (not progressive) by default.
    Image.fromarray(rgb, "RGB").save(buf, "JPEG", quality=JPEG_QUALITY, subsampling=1, optimize=False)
    return buf.getvalue()


def to_rgb8(arr):
    """Any decoded array (grey, RGB, RGBA; any integer depth) as H x W x 3 uint8."""
    arr = np.asarray(arr)
    if arr.dtype != np.uint8:
        lo, hi = float(arr.min()), float(arr.max())
        arr = ((arr.astype(np.float64) - lo) / max(hi - lo, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.shape[-1] == 4:
        arr = arr[..., :3]
    return np.ascontiguousarray(arr)


def load(path):
    """(rgb pixels or None, jpeg bitstream to keep or None, lossy history).

    The lossy history is None for a source never lossily compressed, else
    (ratio, method) as LossyImageCompressionRatio / Method will say.
    """
    suffix = path.suffix.lower()
    if suffix == ".dcm":
        ds = pydicom.dcmread(path)
        ts = ds.file_meta.TransferSyntaxUID
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        lossy = None
        if "LossyImageCompressionRatio" in ds:
            lossy = (ds.LossyImageCompressionRatio, ds.get("LossyImageCompressionMethod", LOSSY_TS.get(ts, "")))
        elif ts in LOSSY_TS:
            size = ds.Rows * ds.Columns * ds.SamplesPerPixel * frames
            lossy = (f"{size / len(ds.PixelData):.2f}", LOSSY_TS[ts])
        if ts == JPEGBaseline8Bit and frames == 1:
            frame = next(generate_frames(ds.PixelData, number_of_frames=1))
            if keepable_jpeg(frame):
                return None, frame, lossy
        # pydicom 3 gives YBR as RGB; a palette is applied here.
        arr = ds.pixel_array
        if ds.PhotometricInterpretation == "PALETTE COLOR":
            from pydicom.pixels import apply_color_lut

            arr = apply_color_lut(arr, ds)
        if frames > 1:
            arr = arr[0]
        return to_rgb8(arr), None, lossy
    data = path.read_bytes()
    if suffix in (".jpg", ".jpeg") and keepable_jpeg(data):
        with Image.open(io.BytesIO(data)) as im:
            return None, data, (f"{im.width * im.height * 3 / len(data):.2f}", "ISO_10918_1")
    with Image.open(io.BytesIO(data)) as im:
        lossy = (f"{im.width * im.height * 3 / len(data):.2f}", "ISO_10918_1") if im.format == "JPEG" else None
        if im.mode not in ("RGB", "L"):
            im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB")
        arr = np.asarray(im)
    return to_rgb8(arr), None, lossy


def decode_jpeg(data):
    with Image.open(io.BytesIO(data)) as im:
        return to_rgb8(np.asarray(im.convert("RGB")))


def code(value, scheme, meaning):
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def op_dataset(rel, laterality, field):
    h = digest(rel)
    ds = Dataset()
    patient = "PHOTO-" + h[:8].upper()
    study_time = f"{int(h[8:10], 16) % 10 + 8:02d}{int(h[10:12], 16) % 60:02d}{int(h[12:14], 16) % 60:02d}"
    number, field_code = (1, "MACULA") if field == "macula" else (2, "DISC")
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = OP_8BIT
    ds.SOPInstanceUID = uid(rel, "instance")
    for attr in ("StudyDate", "SeriesDate", "ContentDate"):
        setattr(ds, attr, STUDY_DATE)
    for attr in ("StudyTime", "SeriesTime", "ContentTime"):
        setattr(ds, attr, study_time)
    ds.AcquisitionDateTime = STUDY_DATE + study_time
    ds.AccessionNumber = "PH" + h[14:20].upper()
    ds.Modality = "OP"
    ds.Manufacturer = "nightscreen wrap_op"
    ds.InstitutionName = "nightscreen validation photographs"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "Diabetic eye screening"
    ds.SeriesDescription = field_code
    ds.ManufacturerModelName = "photograph wrapped as a 45 degree fundus camera"
    ds.PatientName = f"Photo^{h[:8].upper()}"
    ds.PatientID = patient
    ds.PatientBirthDate = "19600101"
    ds.PatientSex = "O"
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "fake patient per source file (nightscreen wrap_op)"
    ds.DeviceSerialNumber = "WRAP-0001"
    ds.SoftwareVersions = "nightscreen tools/wrap_op.py"
    ds.StudyInstanceUID = uid(rel, "study")
    ds.SeriesInstanceUID = uid(rel, "series")
    ds.StudyID = h[20:26].upper()
    ds.SeriesNumber = number
    ds.InstanceNumber = 1
    # ImageLaterality only: the series' Laterality (0020,0060) must be absent
    # when the image level carries it (dciodvfy: condition unsatisfied).
    ds.ImageLaterality = laterality
    ds.PatientOrientation = ""
    ds.SynchronizationFrameOfReferenceUID = uid(rel, "synchronization")
    ds.SynchronizationTrigger = "NO TRIGGER"
    ds.AcquisitionTimeSynchronized = "N"
    ds.ImageComments = f"DESP field {number} {field_code}; source {rel}"
    ds.BurnedInAnnotation = "NO"
    ds.PatientEyeMovementCommanded = "NO"
    ds.HorizontalFieldOfView = 45.0
    ds.PupilDilated = "YES"
    ds.DegreeOfDilation = None
    ds.MydriaticAgentSequence = []
    ds.RefractiveStateSequence = []
    ds.EmmetropicMagnification = None
    ds.IntraOcularPressure = None
    ds.DetectorType = "CCD"
    ds.AnatomicRegionSequence = [code("5665001", "SCT", "Retina")]
    # What a Topcon camera sends (the SRT code is deprecated, a warning only).
    ds.AcquisitionDeviceTypeCodeSequence = [code("R-1021A", "SRT", "Fundus Camera")]
    for seq in (
        "IlluminationTypeCodeSequence",
        "LightPathFilterTypeStackCodeSequence",
        "ImagePathFilterTypeStackCodeSequence",
        "LensesCodeSequence",
        "AcquisitionContextSequence",
    ):
        setattr(ds, seq, [])
    # A single-frame multi-frame object, as cameras write it.
    ds.NumberOfFrames = 1
    ds.FrameIncrementPointer = 0x00181063
    ds.FrameTime = 0
    ds.SamplesPerPixel = 3
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    return ds


def wrap(src, rel, out, laterality, field, native):
    rgb, jpeg, lossy = load(src)
    ds = op_dataset(rel, laterality, field)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = OP_8BIT
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    how = "kept JPEG"
    if native:
        if rgb is None:
            rgb = decode_jpeg(jpeg)
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.PhotometricInterpretation = "RGB"
        ds.Rows, ds.Columns = rgb.shape[:2]
        ds.LossyImageCompression = "01" if lossy else "00"
        if lossy:
            ds.LossyImageCompressionRatio, ds.LossyImageCompressionMethod = lossy
        ds.PixelData = rgb.tobytes()
        how = "native RGB"
    else:
        if jpeg is None:
            jpeg = encode_jpeg(rgb)
            how = "re-encoded JPEG q95 4:2:2"
        with Image.open(io.BytesIO(jpeg)) as im:
            ds.Columns, ds.Rows = im.size
        if len(jpeg) % 2:
            jpeg += b"\0"
        meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.PhotometricInterpretation = "YBR_FULL_422"
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionRatio = f"{ds.Rows * ds.Columns * 3 / len(jpeg):.2f}"
        ds.LossyImageCompressionMethod = "ISO_10918_1"
        ds.PixelData = encapsulate([jpeg], has_bot=True)
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    ds.file_meta = meta
    out.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(out, enforce_file_format=True)
    return how, ds.Columns, ds.Rows


def check(out):
    """Problems found reading `out` back (pydicom) and by dciodvfy, if installed."""
    problems = []
    ds = pydicom.dcmread(out)
    arr = ds.pixel_array
    if arr.shape != (ds.Rows, ds.Columns, 3) or ds.Modality != "OP" or ds.SOPClassUID != OP_8BIT:
        problems.append(f"pydicom reads back shape {arr.shape}, modality {ds.Modality}")
    if shutil.which("dciodvfy"):
        res = subprocess.run(["dciodvfy", "-new", str(out)], capture_output=True, text=True)
        problems += [line.strip() for line in (res.stdout + res.stderr).splitlines() if line.startswith("Error")]
    return problems


def listed(src_dir):
    path = src_dir / LIST_NAME
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        rows = [
            dict(zip(LIST_COLS, r, strict=True))
            for r in csv.reader((line for line in f if not line.startswith("#")), delimiter="\t")
            if r
        ]
    return {f"{r['group']}/{r['file']}": r for r in rows}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src_dir", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--native", action="store_true", help="Explicit VR Little Endian RGB instead of JPEG baseline")
    p.add_argument("--no-check", action="store_true", help="skip reading back and dciodvfy")
    args = p.parse_args()
    known = listed(args.src_dir)
    sources = sorted(
        q
        for q in args.src_dir.rglob("*")
        if q.is_file() and q.suffix.lower() in SUFFIXES and not q.name.startswith(".")
    )
    if not sources:
        sys.exit(f"wrap_op: no JPEG, PNG or DICOM under {args.src_dir}")
    if not args.no_check and not shutil.which("dciodvfy"):
        print(
            "wrap_op: dciodvfy not installed (apt-get install dicom3tools): checking with pydicom only", file=sys.stderr
        )
    failed = 0
    for src in sources:
        rel = src.relative_to(args.src_dir).as_posix()
        row = known.get(rel, {})
        laterality = row.get("laterality") or ("R" if int(digest(rel)[:2], 16) % 2 == 0 else "L")
        field = row.get("field") or "macula"
        out = args.out_dir / Path(rel).parent / (src.name.replace(".", "_") + ".dcm")
        try:
            how, w, h = wrap(src, rel, out, laterality, field, args.native)
            problems = [] if args.no_check else check(out)
        except Exception as e:  # noqa: BLE001 - one bad source must not stop the rest
            how, w, h, problems = "failed", 0, 0, [f"{type(e).__name__}: {e}"]
        status = "ok" if not problems else "FAIL"
        failed += bool(problems)
        print(f"{status:4} {rel:40} -> {out.relative_to(args.out_dir)}  {w}x{h} {laterality} {field}, {how}")
        for pr in problems:
            print(f"     {pr}")
    print(f"wrap_op: {len(sources) - failed} of {len(sources)} wrapped as OP into {args.out_dir}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
