"""`tf2torch batch`: zoo files (lists of models), tasks and their cache, executors (local, ray),
progress output, and the batch summaries (summary.md/json, junit.xml)."""
