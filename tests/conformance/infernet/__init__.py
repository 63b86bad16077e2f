"""The Infernet node API's conformance suite: HTTP only, against any target (`--target URL`)
or against resource node processes it starts itself."""
