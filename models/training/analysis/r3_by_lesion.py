"""R3 against R2 per image: what lies behind the DR model's p(r3).

    .deps/venv/bin/python models/training/analysis/r3_by_lesion.py RUN STUDIES KEY_FILE [CONFIG]

RUN: a `nightscreen run` output over STUDIES, a generator-v2 batch made by
`nightscreen synth --generator v2` (which writes truth_lesions.csv); KEY_FILE
the pseudonym key of that run; CONFIG the run's configuration (default
configs/desp.toml: its gradable and r3 thresholds). Prints, for R2 and R3 images, which counted
(or drawn but uncounted) lesion kinds go with p(r3) above or below the R3
threshold, and the AUC of R3 against R2 by what makes an image R3 (new
vessels, pre-retinal blood, both). Used for issue 16's R3 analysis
(2026-12-07: new-vessel-only R3 images AUC 0.655, pre-retinal 0.998).
"""
import csv, sys, collections
import numpy as np
from common import DEFAULT_CONFIG, desp_thresholds, outputs_by_uid
run, studies, key_file = sys.argv[1:4]
key = bytes.fromhex(open(key_file).read().strip())
imgs = {r['sop_instance_uid']: r for r in csv.DictReader(open(studies + '/truth_images.csv'))}
outputs = outputs_by_uid(run, key, list(imgs))
les = collections.defaultdict(list)
for l in csv.DictReader(open(studies + '/truth_lesions.csv')):
    les[l['sop_instance_uid']].append(l)
thresholds = desp_thresholds(sys.argv[4] if len(sys.argv) > 4 else DEFAULT_CONFIG)
T, G = thresholds['r3'], thresholds['gradable']
data = []
for uid, im in imgs.items():
    o = outputs.get(uid)
    if o is None or im['gradable'] != 'true' or o['gradable'] < G: continue
    L = les[uid]
    cnt = collections.Counter(l['kind'] for l in L if l['counts'] == 'true')
    drawn_not = collections.Counter(l['kind'] for l in L if l['counts'] != 'true')
    infield_invisible = collections.Counter(l['kind'] for l in L if l['in_field'] == 'true' and l['visible'] == 'false')
    data.append((im['r_grade'], o['r3'], cnt, drawn_not, infield_invisible, uid, im))
for g in ['R2', 'R3']:
    sub = [d for d in data if d[0] == g]
    print(f"\n{g}: {len(sub)} gradable images; above r3 threshold: {sum(d[1] >= T for d in sub)}")
    feats = ['irma', 'venous_beading', 'blot_haemorrhage', 'new_vessels', 'preretinal_haemorrhage', 'cotton_wool_spot']
    for f in feats:
        hi = [d for d in sub if d[1] >= T]; lo = [d for d in sub if d[1] < T]
        share = lambda s, fn: (sum(fn(d) for d in s) / max(1, len(s)))
        print(f"  {f:24s} counted: above {share(hi, lambda d: d[2][f] > 0):.2f} below {share(lo, lambda d: d[2][f] > 0):.2f}"
              f" | drawn, not counted: above {share(hi, lambda d: d[3][f] > 0):.2f} below {share(lo, lambda d: d[3][f] > 0):.2f}"
              f" | in field, invisible: above {share(hi, lambda d: d[4][f] > 0):.2f} below {share(lo, lambda d: d[4][f] > 0):.2f}")
    print('  blots counted: mean above', np.mean([d[2]['blot_haemorrhage'] for d in sub if d[1] >= T]), 'below', np.mean([d[2]['blot_haemorrhage'] for d in sub if d[1] < T]))
from sklearn.metrics import roc_auc_score
sub = [d for d in data if d[0] in ('R2', 'R3')]
y = np.array([d[0] == 'R3' for d in sub]); s = np.array([d[1] for d in sub])
print('\nR3 vs R2 per image AUC', roc_auc_score(y, s))
# R3 images by what makes them R3
for name, fn in [('NV only', lambda c: c['new_vessels'] > 0 and c['preretinal_haemorrhage'] == 0),
                 ('preretinal only', lambda c: c['preretinal_haemorrhage'] > 0 and c['new_vessels'] == 0),
                 ('both', lambda c: c['preretinal_haemorrhage'] > 0 and c['new_vessels'] > 0)]:
    r3 = [d for d in sub if d[0] == 'R3' and fn(d[2])]
    if r3:
        print(f"R3 images with {name}: {len(r3)}, median p(r3) {np.median([d[1] for d in r3]):.3f}, above T {np.mean([d[1] >= T for d in r3]):.2f}, AUC vs R2 {roc_auc_score(np.r_[np.ones(len(r3)), np.zeros((~y).sum())], np.r_[[d[1] for d in r3], s[~y]]):.3f}")
# R2 images with NV or preretinal drawn but not counted
r2 = [d for d in sub if d[0] == 'R2']
for f in ['new_vessels', 'preretinal_haemorrhage']:
    has = [d for d in r2 if d[3][f] > 0]
    print(f"R2 images where {f} is drawn but not counted: {len(has)}, median p(r3) {np.median([d[1] for d in has]) if has else 0:.3f}, above T {np.mean([d[1] >= T for d in has]) if has else 0:.2f}; others above T {np.mean([d[1] >= T for d in r2 if d[3][f] == 0]):.2f}")
