"""adamcu oracle."""
