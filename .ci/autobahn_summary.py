"""Summarise kosoku's per-case Autobahn reports and compare them with a checked-in baseline.

Usage:
  autobahn_summary.py REPORT_DIR [--baseline BASELINE.json]
  autobahn_summary.py REPORT_DIR --write-baseline BASELINE.json

Exit 1 when no case report is found, when any case is FAILED, or (with --baseline) when a case
the baseline records as OK is not OK now, including a case that did not run. Every difference
from the baseline is printed; changes that are not regressions (a case newly OK, a new case, a
NON-STRICT case turning INFORMATIONAL) are shown but do not fail the run.

The baseline is a JSON object mapping each case id (kosoku's "id", e.g. "6.4.3") to its
behavior ("OK", "NON-STRICT", "INFORMATIONAL", ...). --write-baseline writes it from the reports.
"""

import argparse
import collections
import json
import pathlib
import sys


def case_key(case_id):
    """Sorts "9.10.2" after "9.2.1": numerically by dotted part, text ids last."""
    try:
        return (0, tuple(int(part) for part in case_id.split(".")), "")
    except ValueError:
        return (1, (), case_id)


def read_reports(outdir):
    """Case id -> behavior from every per-case report under `outdir` (index files skipped)."""
    cases = {}
    for report in sorted(outdir.rglob("*.json")):
        try:
            data = json.loads(report.read_text())
        except (ValueError, OSError):
            continue
        items = data if isinstance(data, list) else [data]
        for item in items:
            if not isinstance(item, dict) or "behavior" not in item:
                continue
            case_id = str(item.get("id") or item.get("case") or report.name)
            cases[case_id] = item["behavior"]
    return dict(sorted(cases.items(), key=lambda kv: case_key(kv[0])))


def compare(baseline, current):
    """(regressions, other changes) as printable lines, each sorted by case id. A regression is
    a case OK in the baseline and not OK now (or not run), or any case that is now FAILED."""
    regressions, changes = [], []
    for case_id in sorted(set(baseline) | set(current), key=case_key):
        was = baseline.get(case_id, "(absent)")
        now = current.get(case_id, "(not run)")
        if was == now:
            continue
        line = f"  {case_id}: baseline {was} -> now {now}"
        if was == "OK" or now == "FAILED":
            regressions.append(line)
        else:
            changes.append(line)
    return regressions, changes


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report_dir", type=pathlib.Path)
    parser.add_argument("--baseline", type=pathlib.Path, help="fail if an OK case there is not OK")
    parser.add_argument("--write-baseline", type=pathlib.Path, help="write the baseline and exit")
    args = parser.parse_args()

    current = read_reports(args.report_dir)
    counts = collections.Counter(current.values())
    print("autobahn cases:", len(current), dict(sorted(counts.items())))
    if not current:
        print("no Autobahn case reports found in", args.report_dir)
        return 1

    if args.write_baseline:
        args.write_baseline.write_text(json.dumps(current, indent=2) + "\n")
        print("wrote baseline of", len(current), "cases to", args.write_baseline)
        return 0

    status = 0
    failed = [case_id for case_id, behavior in current.items() if behavior == "FAILED"]
    if failed:
        print("FAILED cases:", ", ".join(failed))
        status = 1

    if args.baseline:
        baseline = json.loads(args.baseline.read_text())
        base_counts = collections.Counter(baseline.values())
        print("baseline:", len(baseline), dict(sorted(base_counts.items())), "from", args.baseline)
        regressions, changes = compare(baseline, current)
        if regressions:
            print(f"REGRESSIONS ({len(regressions)}): OK in the baseline and not OK now, or FAILED:")
            print("\n".join(regressions))
            status = 1
        if changes:
            print(f"other differences from the baseline ({len(changes)}, not failing):")
            print("\n".join(changes))
        if not regressions and not changes:
            print("every case matches the baseline")
    return status


if __name__ == "__main__":
    sys.exit(main())
