"""The Lua processes shipped with the project, as module sources for `ao.runtime`.

Each is a `.lua` file of this package, read with importlib.resources (`source("token")`):

- `token.lua`: the APUS token, an AO standard token as aos's token blueprint behaves
  (Info, Balance, Balances, Total-Supply, Transfer with Debit-Notice and Credit-Notice,
  Mint by the owner, a dev chain's Faucet). Its header documents every action, tag and
  error; it is what APUS's AI router buys credits with (a Transfer with `X-Reason =
  Buy-Credits` to the router).
- `router.lua`: APUS's AI router: credits bought with the token, `Infer` checked and kept
  pending for the bridge (`ao.apus`), `Task-Status` from the bridge turned into exactly one
  `Infer-Response`, and the `cache` the `/now/cache/...` routes read (PROTOCOL 8.10).
"""

from __future__ import annotations

import importlib.resources


def source(name: str) -> str:
    """The Lua text of the process `name` (the file `<name>.lua` of this package)."""
    return importlib.resources.files(__name__).joinpath(f"{name}.lua").read_text("utf-8")
