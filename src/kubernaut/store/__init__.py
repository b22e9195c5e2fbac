"""PostgreSQL, the source of truth: schema migrations and repositories (asyncpg)."""
