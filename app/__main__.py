"""`python -m app` and the `tern` command."""

from __future__ import annotations

import sys


def main() -> None:
    """Entry point."""
    from app.bootstrap import run

    sys.exit(run())


if __name__ == "__main__":
    main()
