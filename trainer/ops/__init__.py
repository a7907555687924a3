"""trainer/ops/: see docs/architecture.md."""
