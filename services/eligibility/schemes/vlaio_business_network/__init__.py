"""VLAIO innovation clusters: the innovative-business-network track (seed 000)."""
