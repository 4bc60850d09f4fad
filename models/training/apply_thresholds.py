"""Write thresholds chosen by evaluate.py --choose into configs/desp.toml [triage.desp].

    python apply_thresholds.py thresholds.json ../../configs/desp.toml

Only the five `*_at_least` values change; comments and everything else stay.
"""
import json
import re
import sys

KEYS = {"gradable": "gradable_at_least", "r3": "r3_at_least", "referable": "referable_at_least",
        "m1": "m1_at_least", "any_dr": "any_dr_at_least"}


def main():
    thresholds_json, config = sys.argv[1], sys.argv[2]
    with open(thresholds_json) as f:
        t = json.load(f)
    with open(config) as f:
        text = f.read()
    for key, name in KEYS.items():
        text, n = re.subn(rf"(?m)^({name}\s*=\s*)[0-9.eE+-]+", rf"\g<1>{t[key]}", text)
        if n != 1:
            sys.exit(f"{config}: expected one `{name} = ...` line, found {n}")
    with open(config, "w") as f:
        f.write(text)
    print(f"{config}: " + ", ".join(f"{KEYS[k]} = {t[k]}" for k in KEYS))


if __name__ == "__main__":
    main()
