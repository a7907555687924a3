"""adamcu trainer."""
