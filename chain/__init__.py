"""inferchain's chain: the pure protocol (`chain.protocol`) and a validator's I/O around it
(`chain.node`)."""
