#!/usr/bin/env python3
"""Fails when a dependency's licence is not compatible with latchkey's GPL-3.0-or-later.

Reads `cargo metadata` (offline: the lock file pins everything) and checks each package's
SPDX expression: an OR needs one acceptable branch, an AND needs all. Packages without an
SPDX expression must be listed in REVIEWED with the reason they are acceptable.
"""
import json
import re
import subprocess
import sys

# Licences whose terms allow combination into a GPL-3.0-or-later work.
ALLOWED = {
    "MIT", "MIT-0", "Apache-2.0", "BSD-2-Clause", "BSD-3-Clause", "ISC", "Zlib", "Unlicense",
    "0BSD", "CC0-1.0", "BSL-1.0", "Unicode-3.0", "Unicode-DFS-2016", "MPL-2.0", "OpenSSL",
    "GPL-3.0", "GPL-3.0-or-later", "GPL-3.0+", "LGPL-3.0", "LGPL-3.0-or-later", "LGPL-2.1-or-later",
    "CDLA-Permissive-2.0", "bzip2-1.0.6",
    # libpq (pq-src): a permissive, MIT-like licence (OSI-approved, GPL-compatible).
    "PostgreSQL",
}
ALLOWED_EXCEPTIONS = {"LLVM-exception"}
# name -> why (for packages publishing a licence file instead of an SPDX expression)
REVIEWED = {"latchkey": "this project (GPL-3.0-or-later)"}


def acceptable(expr: str) -> bool:
    tokens = re.findall(r"\(|\)|[A-Za-z0-9.+-]+", expr.replace("/", " OR "))
    pos = 0

    def parse_or():
        nonlocal pos
        ok = parse_and()
        while pos < len(tokens) and tokens[pos].upper() == "OR":
            pos += 1
            ok = parse_and() or ok
        return ok

    def parse_and():
        nonlocal pos
        ok = parse_with()
        while pos < len(tokens) and tokens[pos].upper() == "AND":
            pos += 1
            ok = parse_with() and ok
        return ok

    def parse_with():
        nonlocal pos
        ok = parse_atom()
        if pos < len(tokens) and tokens[pos].upper() == "WITH":
            ok = ok and tokens[pos + 1] in ALLOWED_EXCEPTIONS
            pos += 2
        return ok

    def parse_atom():
        nonlocal pos
        tok = tokens[pos]
        pos += 1
        if tok == "(":
            ok = parse_or()
            pos += 1  # ")"
            return ok
        return tok in ALLOWED

    result = parse_or()
    return result and pos == len(tokens)


def main() -> int:
    meta = json.loads(subprocess.check_output(["cargo", "metadata", "--format-version", "1", "--locked"]))
    used = {node["id"] for node in meta["resolve"]["nodes"]}
    bad = []
    for pkg in meta["packages"]:
        if pkg["id"] not in used:
            continue
        lic = pkg.get("license")
        if pkg["name"] in REVIEWED:
            continue
        if not lic or not acceptable(lic):
            bad.append(f"{pkg['name']} {pkg['version']}: {lic or 'no SPDX licence expression'}")
    if bad:
        print("dependencies with licences not known to be GPL-3.0-or-later compatible:")
        print("\n".join(f"  {b}" for b in sorted(bad)))
        return 1
    print(f"licences: {len(used)} packages checked, all compatible with GPL-3.0-or-later")
    return 0


if __name__ == "__main__":
    sys.exit(main())
