"""trainer/nets/: see docs/architecture.md."""
