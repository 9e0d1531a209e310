"""Tillväxtverket S3 pilot, step 2: financing (seed 003)."""
