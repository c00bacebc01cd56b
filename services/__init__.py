"""HTTP service for selection jobs (grows in later issues)."""
