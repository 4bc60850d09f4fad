"""R3 per eye, as DESP grades: how much of the R3 gap is new vessels alone.

    .deps/venv/bin/python models/training/analysis/r3_by_eye.py RUN STUDIES KEY_FILE [CONFIG]

RUN: a `nightscreen run` output over STUDIES, a generator-v2 batch with
truth_lesions.csv; KEY_FILE the run's pseudonym key; CONFIG the run's
configuration (default configs/desp.toml: its gradable_at_least). An eye's score is the
highest p(r3) of its gradable images (the card's rule); an R3 eye is
"new vessels only" when its counted lesions include new vessels and no
pre-retinal haemorrhage. Prints the R3 operating point at 95 % sensitivity
three ways: as the model is; without the new-vessel-only R3 eyes; and with
them assumed found (a perfect second look for new vessels).

2026-12-07, dr-screen 2.0.0: validation (v2 seed 2) 19 of 48 R3 eyes are
new-vessel-only, held out (seed 3) 47 of 91; specificity at 95 % R3
sensitivity 0.865 and 0.845 as the model is, 1.000 without them or with them
found. So R3 specificity is limited only by new vessels: a second look must
find >= 92 % of new-vessel-only eyes (43 of 47 held out) while calling no
more than ~10 % of the other eyes R3 (86 of 869 held out).
"""
import collections
import csv
import sys

import numpy as np

from common import DEFAULT_CONFIG, desp_thresholds, outputs_by_uid

GRADES = ['R0', 'R1', 'R2', 'R3']


def eyes_of(run, studies, key, gradable_at_least):
    images = list(csv.DictReader(open(studies + '/truth_images.csv')))
    outputs = outputs_by_uid(run, key, [im['sop_instance_uid'] for im in images])
    counted = collections.defaultdict(collections.Counter)
    for lesion in csv.DictReader(open(studies + '/truth_lesions.csv')):
        if lesion['counts'] == 'true':
            counted[lesion['sop_instance_uid']][lesion['kind']] += 1
    eyes = collections.defaultdict(lambda: {'p': [], 'grades': [], 'kinds': collections.Counter()})
    for im in images:
        e = eyes[(im['study_uid'], im['eye'])]
        e['grades'].append(im['r_grade'])
        e['kinds'].update(counted[im['sop_instance_uid']])
        o = outputs.get(im['sop_instance_uid'])
        if o and o['gradable'] >= gradable_at_least:
            e['p'].append(o['r3'])
    out = []
    for e in eyes.values():
        grades = [g for g in e['grades'] if g in GRADES]
        if grades and e['p']:
            grade = max(grades, key=GRADES.index)
            nv_only = grade == 'R3' and e['kinds']['new_vessels'] > 0 and e['kinds']['preretinal_haemorrhage'] == 0
            out.append((grade, max(e['p']), nv_only))
    return out


def specificity_at(pos, neg, sensitivity=0.95):
    t = np.sort(pos)[int(np.floor((1 - sensitivity) * len(pos)))]
    return t, float(np.mean(neg < t))


def main():
    run, studies, key_file = sys.argv[1:4]
    gradable_at_least = desp_thresholds(sys.argv[4] if len(sys.argv) > 4 else DEFAULT_CONFIG)['gradable']
    key = bytes.fromhex(open(key_file).read().strip())
    eyes = eyes_of(run, studies, key, gradable_at_least)
    neg = np.array([p for g, p, _ in eyes if g != 'R3'])
    r2 = np.array([p for g, p, _ in eyes if g == 'R2'])
    r3 = [(p, nv) for g, p, nv in eyes if g == 'R3']
    print(f"R3 eyes {len(r3)} (new vessels only: {sum(nv for _, nv in r3)}), other gradable eyes {len(neg)} (R2: {len(r2)})")
    t, s = specificity_at(np.array([p for p, _ in r3]), neg)
    print(f"as the model is:            threshold {t:.3f}, specificity {s:.3f} (R2 eyes below it: {np.mean(r2 < t):.3f})")
    t, s = specificity_at(np.array([p for p, nv in r3 if not nv]), neg)
    print(f"without new-vessel-only R3: threshold {t:.3f}, specificity {s:.3f}")
    t, s = specificity_at(np.array([1.0 if nv else p for p, nv in r3]), neg)
    print(f"with them all found:        threshold {t:.3f}, specificity {s:.3f}")


if __name__ == '__main__':
    main()
