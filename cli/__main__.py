"""`python -m cli ...`: the same as the `inferchain` console script."""

from __future__ import annotations

from cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
