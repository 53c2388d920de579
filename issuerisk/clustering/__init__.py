"""Clustering algorithms shared by the cluster stage, tune and explain: the CPU/cuML backends, the seeded consensus,
quality measures and centroids."""
