"""Run a local inferchain network until Ctrl-C (`make testnet`): the supervisor is
`testnet.launcher`; `python scripts/testnet.py --help` lists its options."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from testnet.launcher import main

if __name__ == "__main__":
    sys.exit(main())
