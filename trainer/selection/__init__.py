"""trainer/selection/: see docs/architecture.md."""
