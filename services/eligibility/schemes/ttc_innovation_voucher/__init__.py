"""TTC innovation voucher (seed 002)."""
