"""TTC cross-border innovation fund (GCS cluster stimulation fund) (seed 002)."""
