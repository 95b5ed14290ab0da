"""Run every benchmark script in bench/ and print one JSON object of their reports.

Usage: ``python bench/run_all.py [--quick]``. Each script prints one JSON
object; none asserts anything about speed. docs/performance.md quotes them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def main() -> None:
    extra = sys.argv[1:]
    report = {}
    for script in sorted(HERE.glob("bench_*.py")):
        out = subprocess.run(
            [sys.executable, str(script), *extra], capture_output=True, text=True, check=True
        )
        report[script.stem] = json.loads(out.stdout)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
