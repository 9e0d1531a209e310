"""VLAIO innovation clusters: the spearhead-cluster track (seed 000)."""
