"""GitHub REST crawling: the rate-limit-aware client, search slicing and the issue pager."""
