"""adamcu server."""
