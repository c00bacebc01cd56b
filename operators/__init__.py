"""Pure operators on Arrow/NumPy batches: no Ray, no HTTP."""
