"""Models of the benchmark tasks."""
