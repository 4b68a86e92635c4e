"""Bot policy: pure decisions over request facts (see decide.py)."""
