"""The local testnet: the supervisor of `make testnet` (`launcher`), the network of validator
and resource node processes it and the process-level tests run (`network`, `process`), the
command lines of both (`commands`), and the faults to inject into a running network
(`perturb`)."""
