"""Norwegian Innovation Clusters (seed 004)."""
