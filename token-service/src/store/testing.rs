//! Test databases of either kind, so the store's tests (and others') run on both backends.
//!
//! PostgreSQL tests need a server: `TOKEN_SERVICE_TEST_POSTGRES` names one as a superuser URL
//! without a database (`make test-unit` starts one with `scripts/pg.sh`:
//! `postgres://postgres@127.0.0.1:PORT`). Each test gets a database of its own. Without the
//! variable they are skipped with a message, unless `TOKEN_SERVICE_TEST_REQUIRE_POSTGRES=1`
//! (set by `make test`) makes that a failure.

use super::{Database, Store, StoreOptions};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestDb {
    pub dir: tempfile::TempDir,
    pub database: Database,
}

const SERVER: &str = "TOKEN_SERVICE_TEST_POSTGRES";

impl TestDb {
    /// A fresh, empty database; `None` when PostgreSQL is asked for and none is configured.
    pub async fn new(backend: Backend) -> Option<TestDb> {
        let dir = tempfile::tempdir().expect("temp dir");
        let database = match backend {
            Backend::Sqlite => Database::Sqlite(dir.path().join("t.db")),
            Backend::Postgres => Database::Postgres(fresh_postgres_database().await?),
        };
        Some(TestDb { dir, database })
    }

    /// A store on it: each call is one more replica on the same data.
    pub async fn open(&self) -> Store {
        self.open_following_every(Duration::from_millis(20)).await
    }

    /// [`TestDb::open`] with a replica that reads other replicas' changes this seldom.
    pub async fn open_following_every(&self, feed_poll: Duration) -> Store {
        let options = StoreOptions {
            feed_poll,
            ..StoreOptions::default()
        };
        Store::connect(&self.database, options)
            .await
            .expect("open the test database")
    }
}

async fn fresh_postgres_database() -> Option<String> {
    let Ok(server) = std::env::var(SERVER) else {
        assert!(
            std::env::var("TOKEN_SERVICE_TEST_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "{SERVER} is not set: no PostgreSQL to test against"
        );
        eprintln!("skipped: {SERVER} is not set (make test-unit starts a PostgreSQL)");
        return None;
    };
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let admin = format!("{}/postgres", server.trim_end_matches('/'));
    let create = format!("CREATE DATABASE {name}");
    tokio::task::spawn_blocking(move || {
        let mut client = postgres::Client::connect(&admin, postgres::NoTls)
            .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL at {admin}: {e}"));
        client
            .batch_execute(&create)
            .expect("create a test database");
    })
    .await
    .expect("create a test database");
    Some(format!("{}/{name}", server.trim_end_matches('/')))
}

/// `#[tokio::test]`s running one async test function per backend: `on_both_backends!(f, g)`
/// makes `sqlite::f`, `postgres::f`, ... from `async fn f(backend: Backend)`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::store::testing::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::store::testing::Backend::Postgres).await
                }
            )*
        }
    };
}
pub(crate) use on_both_backends;
