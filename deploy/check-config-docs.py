#!/usr/bin/env python3
"""The README's configuration table and the application agree.

Every variable named in the table's first column is one the application reads (an `env = "..."`
attribute of its command-line settings, the pass-through prefix KAFKA_PROPERTY_, or the standard
RUST_LOG and OTEL_* variables), and every variable the application reads is in the table.
The chart and the compose file are checked the same way by deploy/helm/check_deploy.py.
"""
import pathlib
import re
import sys

root = pathlib.Path(__file__).resolve().parent.parent
sources = list((root / "crates/inventory-app/src").glob("*.rs"))
read = set()
for source in sources:
    read |= set(re.findall(r'env = "([A-Z][A-Z0-9_]*)"', source.read_text()))
if not read:
    sys.exit("no env attributes found in crates/inventory-app/src: the check is broken")

readme = (root / "README.md").read_text()
section = readme.split("\n## Configuration", 1)[1].split("\n## ", 1)[0]
documented = set()
for line in section.splitlines():
    if line.startswith("| `"):
        first = line.split("|")[1]
        documented |= set(re.findall(r"`([A-Z][A-Z0-9_]*)`", first))


def accepted(name: str) -> bool:
    return name in read or name == "RUST_LOG" or name.startswith("OTEL_") or name.startswith("KAFKA_PROPERTY_")


unknown = sorted(n for n in documented if not accepted(n))
undocumented = sorted(n for n in read if n not in documented)
for name in unknown:
    print(f"README documents {name}, which the application does not read")
for name in undocumented:
    print(f"the application reads {name}, which the README's configuration table does not document")
if unknown or undocumented:
    sys.exit(1)
print(f"README configuration table: {len(documented)} variables, all read by the application; all {len(read)} it reads are documented")
