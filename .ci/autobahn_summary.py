"""Summarise kosoku's per-case Autobahn reports; exit 1 on any FAILED case (or none run)."""

import collections
import json
import pathlib
import sys

outdir = pathlib.Path(sys.argv[1])
counts = collections.Counter()
failed = []
for report in sorted(outdir.rglob("*.json")):
    try:
        data = json.loads(report.read_text())
    except (ValueError, OSError):
        continue
    items = data if isinstance(data, list) else [data]
    for item in items:
        if not isinstance(item, dict) or "behavior" not in item:
            continue
        behavior = item["behavior"]
        counts[behavior] += 1
        if behavior == "FAILED":
            failed.append(item.get("case") or item.get("id") or report.name)
total = sum(counts.values())
print("autobahn cases:", total, dict(sorted(counts.items())))
if total == 0:
    print("no Autobahn case reports found in", outdir)
    sys.exit(1)
if failed:
    print("FAILED cases:", ", ".join(map(str, failed)))
    sys.exit(1)
