"""A repository file that corpus workspaces point at; it is never imported."""
