#!/usr/bin/env python3
"""Reads a nightscreen OUT folder the way analysts will: DuckDB, pyarrow, polars.

Usage: check_parquet.py OUT [--images N] [--errors N] [--skipped N] [--studies N]

Asserts that each table reads as one dataset with the documented column
types, that the three readers agree on row counts, and (when given) that the
counts equal the expected ones. Exits non-zero with a message on any failure.
"""
import argparse
import sys

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds

TS_UTC = pa.timestamp("us", tz="UTC")
EXPECTED = {
    "images": {
        "run_id": pa.string(), "patient_pseudonym": pa.string(), "study_pseudonym": pa.string(),
        "series_pseudonym": pa.string(), "instance_pseudonym": pa.string(), "file_pseudonym": pa.string(),
        "frame": pa.int32(), "modality": pa.string(),
        "photometric": pa.string(), "study_datetime": pa.timestamp("us"),
        "stored_mean": pa.float64(), "model_id": pa.string(), "model_version": pa.string(),
        "model_sha256": pa.string(), "labels": pa.list_(pa.string()),
        "outputs": pa.list_(pa.float32()), "top_score": pa.float32(), "scored_at": TS_UTC,
        "software_version": pa.string(), "config_sha256": pa.string(),
    },
    "errors": {
        "run_id": pa.string(), "file_pseudonym": pa.string(), "study_pseudonym": pa.string(), "stage": pa.string(),
        "message": pa.string(), "frame": pa.int32(), "recorded_at": TS_UTC,
    },
    "skipped": {"file_pseudonym": pa.string(), "reason_key": pa.string(), "recorded_at": TS_UTC},
    "studies": {
        "rank": pa.int32(), "patient_pseudonym": pa.string(), "study_pseudonym": pa.string(), "band": pa.string(), "score": pa.float32(),
        "reason": pa.string(), "modalities": pa.list_(pa.string()), "study_datetime": pa.timestamp("us"),
        "right_eye_grade": pa.string(), "left_eye_grade": pa.string(),
        **{f"{eye}_eye_p_{p}": pa.float32() for eye in ("right", "left") for p in ("referable", "r3", "m1", "gradable")},
    },
}
IDENTIFYING = {"patient_id", "patient_name", "accession_number", "patient_birth_date",
               "study_uid", "series_uid", "sop_instance_uid", "source_path"}


def fail(msg):
    print(f"check_parquet: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def check_table(out, name, expected_rows):
    glob = f"{out}/{name}/*.parquet"
    table = ds.dataset(f"{out}/{name}", format="parquet").to_table()
    for col, typ in EXPECTED[name].items():
        if col not in table.schema.names:
            fail(f"{name}: missing column {col}")
        got = table.schema.field(col).type
        if not got.equals(typ):
            # list item field names may differ ("item" vs "element"): compare value types
            if not (pa.types.is_list(got) and pa.types.is_list(typ) and got.value_type.equals(typ.value_type)):
                fail(f"{name}.{col}: type {got}, expected {typ}")
    leaked = IDENTIFYING & set(table.schema.names)
    if leaked:
        fail(f"{name}: identifying columns {sorted(leaked)}")
    n_arrow = table.num_rows
    n_duck = duckdb.sql(f"SELECT count(*) FROM read_parquet('{glob}')").fetchall()[0][0]
    n_polars = pl.scan_parquet(glob).select(pl.len()).collect().item()
    if not (n_arrow == n_duck == n_polars):
        fail(f"{name}: readers disagree on rows: pyarrow {n_arrow}, duckdb {n_duck}, polars {n_polars}")
    if expected_rows is not None and n_arrow != expected_rows:
        fail(f"{name}: {n_arrow} rows, expected {expected_rows}")
    return table


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    for t in ("images", "errors", "skipped", "studies"):
        p.add_argument(f"--{t}", type=int)
    args = p.parse_args()
    tables = {t: check_table(args.out, t, getattr(args, t)) for t in EXPECTED}

    # Values analysts rely on: probabilities are finite, provenance is filled.
    bad = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{args.out}/images/*.parquet') "
        "WHERE len(model_sha256) <> 64 OR model_id = '' OR len(outputs) <> len(labels) "
        "OR list_any_value(outputs) IS NULL OR isnan(top_score)"
    ).fetchall()[0][0]
    if bad:
        fail(f"images: {bad} rows with missing provenance or outputs")
    # The studies table is the worklist order: ranks 1..n without gaps.
    ranks = sorted(tables["studies"].column("rank").to_pylist())
    if ranks != list(range(1, len(ranks) + 1)):
        fail("studies: ranks are not 1..n")
    by_stage = duckdb.sql(
        f"SELECT stage, count(*) FROM read_parquet('{args.out}/errors/*.parquet') GROUP BY stage ORDER BY stage"
    ).fetchall()
    print("check_parquet: ok;", {t: v.num_rows for t, v in tables.items()}, "errors by stage:", dict(by_stage))


if __name__ == "__main__":
    main()
