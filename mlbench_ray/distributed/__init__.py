"""Gradient aggregation schemes and cross-rank metric reductions."""
