"""Validates nightscreen's FHIR R4 bundles (tests/fhir.rs).

Each file given must parse as an R4 Bundle with fhir.resources 6.4.0
(structure, cardinality, types); every `reference` must resolve to an
entry's fullUrl, or the Reference must be logical (by identifier); and
the status codes must be in our allow-list, because fhir.resources does
not check bindings. Exits 1 with the problems, else prints "ok N".
"""
import json
import sys

import fhir.resources
from fhir.resources.bundle import Bundle

ALLOWED = {
    ("Bundle", "type"): {"transaction"},
    ("DiagnosticReport", "status"): {"preliminary"},
    ("Observation", "status"): {"preliminary"},
    ("ImagingStudy", "status"): {"available"},
}
METHODS = {"POST", "PUT"}


def references(node, path="$"):
    """Every Reference-shaped object: (path, object)."""
    if isinstance(node, dict):
        if "reference" in node or ("identifier" in node and node.get("type") == "Patient"):
            yield path, node
        for k, v in node.items():
            yield from references(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from references(v, f"{path}[{i}]")


def check(path):
    problems = []
    Bundle.parse_file(path)  # raises on any structural error
    data = json.load(open(path, encoding="utf-8"))
    if data.get("type") not in ALLOWED[("Bundle", "type")]:
        problems.append(f"Bundle.type {data.get('type')!r}")
    urls = [e["fullUrl"] for e in data["entry"]]
    if len(set(urls)) != len(urls):
        problems.append("duplicate fullUrl")
    for i, e in enumerate(data["entry"]):
        r = e["resource"]
        kind = r["resourceType"]
        allowed = ALLOWED.get((kind, "status"))
        if allowed is not None and r.get("status") not in allowed:
            problems.append(f"entry {i} {kind}.status {r.get('status')!r} not in {sorted(allowed)}")
        if e.get("request", {}).get("method") not in METHODS:
            problems.append(f"entry {i} request.method {e.get('request')!r}")
    for where, ref in references(data):
        target = ref.get("reference")
        if target is None:
            ident = ref.get("identifier") or {}
            if not (ident.get("system") and ident.get("value")):
                problems.append(f"{where}: logical reference without system and value")
        elif target not in urls:
            problems.append(f"{where}: {target} is not an entry of the bundle")
    return problems


def main():
    assert fhir.resources.__version__.startswith("6.4."), fhir.resources.__version__
    failed = False
    for path in sys.argv[1:]:
        try:
            problems = check(path)
        except Exception as e:  # the validator's own message says what is wrong
            problems = [f"{type(e).__name__}: {e}"]
        for p in problems:
            failed = True
            print(f"{path}: {p}")
    if failed:
        sys.exit(1)
    print(f"ok {len(sys.argv) - 1}")


main()
