"""Tillväxtverket S3 pilot, step 1: the learning platform (seed 003)."""
