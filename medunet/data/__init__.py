"""Data: generated default data sets (and, later, loaders for real ones)."""
