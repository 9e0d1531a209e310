"""VLAIO cluster pact: the Hermes-fund earmark of a spearhead cluster (seed 001)."""
