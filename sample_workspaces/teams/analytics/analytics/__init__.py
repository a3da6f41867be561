"""Analytics team's code. `analytics.definitions` holds two repositories."""
