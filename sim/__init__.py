"""The PoS+W simulator: the chain's own pure rules (chain.protocol) over a population of
resource nodes with chosen behaviours, block by block, with no process and no disk."""
