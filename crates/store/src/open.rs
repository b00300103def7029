//! [`open_store`]: the store a [`StoreSpec`] from config names.

use hybridgrid_core::Store;
use hybridgrid_core::spec::{SpecError, StoreSpec};
use std::sync::Arc;

#[allow(dead_code)] // used only by the backends whose features are off
fn feature_off(backend: &'static str) -> SpecError {
    SpecError::FeatureOff {
        seam: "store",
        backend,
        krate: "hybridgrid-store",
        feature: backend,
    }
}

/// Opens the store `spec` names (creating the SQLite file, or connecting to PostgreSQL) and applies
/// pending migrations. Errors name the key (`store.url`, `store.pool.max_connections`) and never
/// show a password.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), hybridgrid_core::SpecError> {
/// let spec: hybridgrid_core::StoreSpec = yaml_serde::from_str("{ backend: sqlite, path: \":memory:\" }").unwrap();
/// let store = hybridgrid_store::open_store(&spec).await?;
/// store.save_workflow("nightly", serde_json::json!({})).await.unwrap();
/// # Ok(())
/// # }
/// ```
pub async fn open_store(spec: &StoreSpec) -> Result<Arc<dyn Store>, SpecError> {
    match spec {
        #[cfg(feature = "sqlite")]
        StoreSpec::Sqlite { path } => {
            let store = if path.as_os_str() == ":memory:" {
                crate::SqliteStore::in_memory().await
            } else {
                crate::SqliteStore::open(path).await
            };
            let store = store.map_err(|e| SpecError::open("store", None, e))?;
            Ok(Arc::new(store))
        }
        #[cfg(not(feature = "sqlite"))]
        StoreSpec::Sqlite { .. } => Err(feature_off("sqlite")),
        #[cfg(feature = "postgres")]
        StoreSpec::Postgres { url, schema, pool } => {
            use std::str::FromStr;
            if !matches!(url.scheme(), "postgres" | "postgresql") {
                return Err(SpecError::invalid(
                    "store.url",
                    format!("expected a postgres:// URL, got {url}"),
                ));
            }
            sqlx::postgres::PgConnectOptions::from_str(url.expose())
                .map_err(|e| SpecError::invalid("store.url", url.scrub(&e.to_string())))?;
            if pool.max_connections == 0 {
                return Err(SpecError::invalid(
                    "store.pool.max_connections",
                    "must be at least 1, got 0",
                ));
            }
            let options = crate::PoolOptions {
                max_connections: pool.max_connections,
                acquire_timeout: pool.acquire_timeout,
            };
            let store = crate::PostgresStore::connect(url.expose(), schema.as_deref(), options)
                .await
                .map_err(|e| match e {
                    hybridgrid_core::StoreError::Invalid(message) if schema.is_some() => {
                        SpecError::invalid("store.schema", url.scrub(&message))
                    }
                    e => SpecError::open("store", Some(url), e),
                })?;
            Ok(Arc::new(store))
        }
        #[cfg(not(feature = "postgres"))]
        StoreSpec::Postgres { .. } => Err(feature_off("postgres")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use hybridgrid_core::spec::{PoolSpec, SecretUrl};

    /// Built without a backend's feature, its spec is refused naming the feature.
    #[tokio::test]
    async fn a_backend_whose_feature_is_off_is_named() {
        if !cfg!(feature = "postgres") {
            let spec = StoreSpec::Postgres {
                url: SecretUrl::new("postgres://127.0.0.1/test").unwrap(),
                schema: None,
                pool: PoolSpec::default(),
            };
            let err = open_store(&spec).await.err().unwrap();
            assert_eq!(
                err.to_string(),
                "store backend \"postgres\" needs hybridgrid-store's feature \"postgres\""
            );
        }
        if !cfg!(feature = "sqlite") {
            let spec = StoreSpec::Sqlite {
                path: ":memory:".into(),
            };
            let err = open_store(&spec).await.err().unwrap();
            assert!(err.to_string().contains("feature \"sqlite\""), "{err}");
        }
    }
}
