//! The schema and the database's own facts: migrations (sqlx's migrator,
//! adopting databases of the earlier migration table) and the `meta` rows
//! (epoch, token key) created once per database.

use sqlx::AnyPool;

use super::Backend;

pub(super) async fn migrate(pool: &AnyPool, backend: Backend) -> anyhow::Result<()> {
    adopt_legacy_migrations(pool, backend).await?;
    backend.migrator().run(pool).await?;
    Ok(())
}

/// Databases made before the schema moved to sqlx's migrator record their
/// versions in `schema_migrations`; the migrator is told that those are
/// applied (with their checksums), so it does not run them again.
async fn adopt_legacy_migrations(pool: &AnyPool, backend: Backend) -> anyhow::Result<()> {
    use sqlx::migrate::Migrate;
    let legacy_table = match backend {
        Backend::Sqlite => {
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        }
        Backend::Postgres => {
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'schema_migrations' \
             AND table_schema = current_schema()"
        }
    };
    let exists: i64 = sqlx::query_scalar(legacy_table).fetch_one(pool).await?;
    if exists == 0 {
        return Ok(());
    }
    let mut conn = pool.acquire().await?;
    conn.lock().await?;
    let adopted = async {
        conn.ensure_migrations_table().await?;
        let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations")
            .fetch_all(&mut *conn)
            .await?;
        for m in backend.migrator().iter() {
            if versions.contains(&m.version) {
                sqlx::query(
                    "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                     VALUES ($1, $2, TRUE, $3, 0) ON CONFLICT (version) DO NOTHING",
                )
                .bind(m.version)
                .bind(m.description.to_string())
                .bind(m.checksum.to_vec())
                .execute(&mut *conn)
                .await?;
            }
        }
        sqlx::query("DROP TABLE schema_migrations")
            .execute(&mut *conn)
            .await?;
        anyhow::Ok(())
    }
    .await;
    conn.unlock().await?;
    adopted
}

pub(super) async fn meta(pool: &AnyPool) -> anyhow::Result<(String, Vec<u8>)> {
    let mut key = [0u8; 32];
    crate::domain::fill_random(&mut key);
    let fresh = [
        ("epoch", crate::domain::random_id(9)),
        ("token_key", hex::encode(key)),
    ];
    for (k, v) in fresh {
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(k.to_owned())
            .bind(v)
            .execute(pool)
            .await?;
    }
    let epoch = meta_value(pool, "epoch").await?;
    let key = hex::decode(meta_value(pool, "token_key").await?)?;
    Ok((epoch, key))
}

pub(super) async fn meta_value(pool: &AnyPool, key: &str) -> sqlx::Result<String> {
    sqlx::query_scalar::<_, String>("SELECT value FROM meta WHERE key = $1")
        .bind(key)
        .fetch_one(pool)
        .await
}
