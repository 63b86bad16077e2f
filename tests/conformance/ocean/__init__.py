"""The conformance suite of Ocean's compute-to-data provider on a resource node (PROTOCOL 7.5)."""
