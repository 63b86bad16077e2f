"""The protocol, pure: values, encodings, signatures, the state and its rules, consensus.

Nothing here does I/O or reads a clock (import-linter checks that it imports no node, server,
storage, network, thread or time module): the same inputs give the same outputs on every
validator, and tests replay it. `blocks` is the state transition to read top to bottom.
"""
