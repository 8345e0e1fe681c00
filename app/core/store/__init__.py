"""The encrypted history: SQLCipher database, keys, schema and repositories."""
