"""HTML and JSON reports for staff. Evidently is imported here and nowhere else, lazily:
importing it takes ~10 s, which the CLI and the API must not pay at start-up."""
