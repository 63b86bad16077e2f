"""The local testnet's own logic: faults to inject into a running network (`perturb`)."""
