"""A run process: one job, in its location's own interpreter (docs/daemon.md, "The run
process"). Standard library only, like the loader: it runs in other people's interpreters."""
