"""trainer/distributed/: see docs/architecture.md."""
