"""What the analysis scripts share: a run's per-image outputs by SOP Instance
UID, and the programme's thresholds from the config the run used."""
import glob
import os
import re
import sys

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '../../../tools'))
from pseudonym import pseudonym  # noqa: E402

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), '../../../configs/desp.toml')


def desp_thresholds(config=DEFAULT_CONFIG):
    """[triage.desp]'s `*_at_least` values, e.g. {'gradable': 0.36, 'r3': 0.19, ...}."""
    text = open(config).read()
    return {m.group(1): float(m.group(2)) for m in re.finditer(r'(?m)^(\w+)_at_least\s*=\s*([0-9.eE+-]+)', text)}


def rows_by_uid(run, key, uids):
    """{uid: images/ row} for each uid the run has a row for (its images/
    table names instances by keyed pseudonyms only)."""
    rows = pa.concat_tables([pq.read_table(f) for f in glob.glob(run + '/images/*.parquet')]).to_pylist()
    by = {r['instance_pseudonym']: r for r in rows}
    found = ((uid, by.get(pseudonym(key, 'instance', uid))) for uid in uids)
    return {uid: row for uid, row in found if row}


def outputs_by_uid(run, key, uids):
    """{uid: {label: p}} for each uid the run scored."""
    return {uid: dict(zip(row['labels'], row['outputs']))
            for uid, row in rows_by_uid(run, key, uids).items() if row['outputs']}
