"""A validator's I/O around the protocol: storage, the ledger, the mempool, the signer, the
block producers (dev mode alone, Tendermint with peers), and the `Node` that wires them."""
