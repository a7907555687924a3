"""trainer/learning/: see docs/architecture.md."""
