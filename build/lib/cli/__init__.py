"""The `student-risk` command line: an edge over the library, the flows and the reports."""
