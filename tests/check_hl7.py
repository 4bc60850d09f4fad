"""Validates nightscreen's HL7 v2.4 ORU^R01 messages (tests/hl7.rs) with
hl7apy 1.3.5 in strict mode: structure of ORU_R01 v2.4, datatypes and
lengths. Segments must end in CR alone. Exits 1 with the problems, else
prints "ok N".
"""
import sys

from importlib.metadata import version

from hl7apy.parser import parse_message
from hl7apy.validation import VALIDATION_LEVEL


def check(path):
    text = open(path, "rb").read().decode("utf-8")
    if "\n" in text:
        return ["a line feed: segments must end in CR only"]
    if not text.endswith("\r"):
        return ["the last segment does not end in CR"]
    message = parse_message(text.rstrip("\r"), validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    message.validate()  # raises on any violation
    problems = []
    if message.name != "ORU_R01":
        problems.append(f"message structure {message.name}")
    if message.msh.msh_12.to_er7() != "2.4":
        problems.append(f"version {message.msh.msh_12.to_er7()}")
    return problems


def main():
    assert version("hl7apy") == "1.3.5", version("hl7apy")
    failed = False
    for path in sys.argv[1:]:
        try:
            problems = check(path)
        except Exception as e:  # hl7apy's message names the offending element
            problems = [f"{type(e).__name__}: {e}"]
        for p in problems:
            failed = True
            print(f"{path}: {p}")
    if failed:
        sys.exit(1)
    print(f"ok {len(sys.argv) - 1}")


main()
