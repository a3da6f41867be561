"""A dotted file whose derived location name would be hidden; never imported."""
