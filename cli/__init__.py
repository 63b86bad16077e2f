"""The `inferchain` command line: a client of a validator's JSON-RPC API (tasks, accounts,
resource nodes, blocks) beside the PoS+W simulator (`inferchain simulate`). It reaches the
chain only through `rpc.client`, as any dApp would."""
