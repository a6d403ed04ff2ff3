"""Storage adapters of the lot tracker: SQL (SQLite, PostgreSQL) and in-memory."""
