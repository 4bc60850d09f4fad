"""Reads nightscreen's SRs back with highdicom, for tests/sr.rs.

usage: check_sr.py SR_DIR INPUT_DIR
Prints one JSON object: "srs" (per SR file, what highdicom parses from it)
and "inputs" (per Study Instance UID, the readable input images with
their laterality, read with pydicom), so the Rust test can compare both with the studies table.
"""
import json
import pathlib
import sys

import highdicom as hd
import pydicom


def code(c):
    return None if c is None else [c.value, c.scheme_designator, c.meaning]


def group(g):
    sites = []
    for site in g.finding_sites:
        lat = site.laterality
        sites.append({"site": code(site.value), "laterality": code(lat) if lat is not None else None})
    qual = {q.name.value: q.value.value for q in g.get_qualitative_evaluations()}
    nums = {m.name.value: float(m.value) for m in g.get_measurements()}
    sources = [s.referenced_sop_instance_uid for s in g.source_images]
    return {
        "tracking_identifier": g.tracking_identifier,
        "tracking_uid": g.tracking_uid,
        "finding": code(g.finding_type),
        "sites": sites,
        "qualitative": qual,
        "measurements": nums,
        "sources": sources,
    }


def texts(ds):
    out = []

    def walk(items):
        for item in items:
            if item.ValueType == "TEXT":
                out.append([item.ConceptNameCodeSequence[0].CodeValue, item.TextValue])
            if item.ValueType == "CODE":
                out.append([item.ConceptNameCodeSequence[0].CodeValue, item.ConceptCodeSequence[0].CodeValue])
            if "ContentSequence" in item:
                walk(item.ContentSequence)

    walk(ds.ContentSequence)
    return out


def main():
    sr_dir, input_dir = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    srs = {}
    for path in sorted(sr_dir.glob("*.dcm")):
        sr = hd.sr.srread(path)
        groups = sr.content.get_image_measurement_groups()
        evidence = [
            sop.ReferencedSOPInstanceUID
            for study in sr.CurrentRequestedProcedureEvidenceSequence
            for series in study.ReferencedSeriesSequence
            for sop in series.ReferencedSOPSequence
        ]
        srs[path.stem] = {
            "sop_class": sr.SOPClassUID,
            "sop_instance": sr.SOPInstanceUID,
            "series": sr.SeriesInstanceUID,
            "study": sr.StudyInstanceUID,
            "patient_id": sr.PatientID,
            "series_description": sr.SeriesDescription,
            "flags": [sr.PreliminaryFlag, sr.VerificationFlag, sr.CompletionFlag],
            "groups": [group(g) for g in groups],
            "evidence": evidence,
            "texts": texts(sr),
        }
    inputs = {}
    for path in sorted(input_dir.rglob("*.dcm")):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # the tests' deliberately broken files
            continue
        if "Rows" not in ds:
            continue
        lat = ds.get("ImageLaterality", ds.get("Laterality", ""))
        inputs.setdefault(ds.StudyInstanceUID, []).append([ds.SOPInstanceUID, lat])
    print(json.dumps({"srs": srs, "inputs": inputs}))


if __name__ == "__main__":
    main()
