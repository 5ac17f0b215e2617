"""PostgreSQL storage: the embedded cluster, the connection pool, migrations, group commit."""
