"""A run's report.md (markdown.py) and report.html (html.py), written from its report.json data."""
