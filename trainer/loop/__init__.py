"""trainer/loop/: see docs/architecture.md."""
