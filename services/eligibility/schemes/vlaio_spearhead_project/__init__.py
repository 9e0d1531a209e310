"""VLAIO innovation projects submitted through a spearhead cluster (seed 000)."""
