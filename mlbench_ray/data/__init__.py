"""Dataset loaders, download and checksums, and per-rank sharding."""
