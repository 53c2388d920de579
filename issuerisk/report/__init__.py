"""The HTML report of a run (Jinja2 templates beside it)."""
