"""The AO unit's conformance suite (PROTOCOL 8.7), over HTTP only."""
