//! The Postgres store against the contract every store must pass, one fresh database per test.

use ots_store_contract::{contract_suite, Fixture};
use ots_store_postgres::testing::fresh_database;
use ots_store_postgres::{PgSettings, PgStore};

async fn fresh() -> Option<Fixture<PgStore>> {
    let db = fresh_database().await?;
    // 256 concurrent reveals queue on the pool and on the row lock: more connections than
    // the default so that the lock, not the pool, is what they contend on.
    let settings = PgSettings {
        max_connections: 32,
        ..PgSettings::default()
    };
    let store = ots_store_postgres::connect(&db.url, &settings)
        .await
        .expect("connect and migrate");
    let pool = store.pool().clone();
    let mut fixture = Fixture::new(store);
    fixture.teardown = Some(Box::pin(async move {
        pool.close().await;
        db.drop_database().await;
    }));
    Some(fixture)
}

contract_suite!(fresh());
