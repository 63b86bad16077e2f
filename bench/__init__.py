"""The benchmark of `scripts/bench.py`: ingestion against a hardhat peer and this machine's
ceilings, reads at 10 thousand and 1 million tasks, the default testnet end to end, memory."""
