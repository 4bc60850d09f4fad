"""Write fundus-gate's card for a DR model of another input size.

    python card_for.py --dr-card OUT/models/dr-screen.toml --out OUT/models

The gate scores the DR model's own tensor, so nightscreen requires the two
cards' [input] tables to be equal (src/model/domain.rs). The gate's graph
takes any height and width (it resamples to its fixed grids inside), so a DR
model of another size needs only the card's [input] changed: this copies
models/fundus-gate.onnx and its card into OUT with the DR card's [input]
table, everything else unchanged (same weights, digest, threshold and
figures; the figures were measured on 384 x 384 tensors, and the card says
so when the size differs).
"""
import argparse
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
NOTE_START = "# This card's [input] follows its DR model's"


def table(text, name, following):
    """Where table `name` starts and `following` starts, as headers at the
    start of a line (a comment may mention "[input]": the note below does)."""
    start = re.search(rf"^\[{name}\]", text, re.M).start()
    return start, re.compile(rf"^\[{following}\]", re.M).search(text, start).start()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dr-card", required=True)
    ap.add_argument("--out", required=True, help="folder for fundus-gate.onnx and fundus-gate.toml")
    ap.add_argument("--gate", default=str(ROOT / "models/fundus-gate.toml"))
    a = ap.parse_args()
    gate = Path(a.gate).read_text()
    dr = Path(a.dr_card).read_text()
    s, e = table(dr, "input", "output")
    new_input = dr[s:e]
    gs, ge = table(gate, "input", "output")
    text = gate[:gs] + new_input + gate[ge:]
    if new_input.strip() != gate[gs:ge].strip() and NOTE_START not in gate:
        note = (NOTE_START + " (another size than the one the gate\n"
                "# was calibrated at: models/training/gate/card_for.py); the gate resamples inside.\n")
        text = note + text
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    src_onnx = Path(a.gate).with_name("fundus-gate.onnx")
    if src_onnx.resolve() != (out / "fundus-gate.onnx").resolve():
        shutil.copyfile(src_onnx, out / "fundus-gate.onnx")
    (out / "fundus-gate.toml").write_text(text)
    print(f"wrote {out / 'fundus-gate.toml'}")


if __name__ == "__main__":
    main()
