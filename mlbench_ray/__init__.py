"""mlbench_ray: the MLBench distributed-training benchmark on Ray Train and Ray Tune."""

__version__ = "0.1.0"
