"""Reference ingestion jobs (see ../README.md)."""
