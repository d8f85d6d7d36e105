"""Data sources, partitioners and the digits-8 reference split (pure numpy, seeded)."""
