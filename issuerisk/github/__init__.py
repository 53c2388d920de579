"""GitHub over HTTP: the rate-limit-aware client, search slicing, the issue pager, and the discover and crawl stages."""
