"""Fault scenarios for the local cluster, each with the invariant it checks (see chaos/README.md)."""
