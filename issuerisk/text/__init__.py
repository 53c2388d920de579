"""Pure text rules shared by stages: framework evidence, repository exclusion words, compiled text kernels."""
