#!/usr/bin/env python3
"""Parses OpenMetrics text with the reference parser of prometheus_client.

    parse_openmetrics.py < exposition

On success: one JSON object on stdout, exit 0:
    {"families": {name: {"type": ..., "unit": ..., "samples":
                         [[sample name, {labels}, value], ...]}}}
When the parser refuses the text: its message on stderr, exit 1.
A broken harness (prometheus_client not importable) exits 3.
"""

from __future__ import annotations

import json
import sys

try:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
except ImportError as e:  # pragma: no cover - harness problem, not a verdict
    print(f"prometheus_client is not importable: {e}", file=sys.stderr)
    sys.exit(3)


def main() -> int:
    text = sys.stdin.read()
    families = {}
    try:
        for family in text_string_to_metric_families(text):
            families[family.name] = {
                "type": family.type,
                "unit": family.unit,
                "samples": [[s.name, s.labels, s.value] for s in family.samples],
            }
    except Exception as e:  # the parser raises ValueError and friends
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    json.dump({"families": families}, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
