"""Ray work (installed as ``issuerisk.ray_tasks``): the Ray start-up, the embedding actors, the clustering task."""
