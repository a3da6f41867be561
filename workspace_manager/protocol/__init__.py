"""The wire protocol shared by the manager and the loader (docs/protocol.md). Stdlib only."""
