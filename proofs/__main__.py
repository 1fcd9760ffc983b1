"""``python -m proofs``: run every exact check, print the table, exit non-zero if any check fails."""

from __future__ import annotations

import sys

from proofs.checks import format_table, run_all


def main() -> int:
    """Run all checks and print one row per check.

    Returns
    -------
    int
        Process exit status: 0 when every check passed, 1 otherwise.
    """
    results = run_all()
    print(format_table(results))
    return 0 if all(result.passed for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
