//! The SQLite store against the contract every store must pass, one fresh file per test.

use ots_domain::{random_string, SystemRng, KEY_ALPHABET};
use ots_store_contract::{contract_suite, Fixture};
use ots_store_sqlite::SqliteStore;

async fn fresh() -> Option<Fixture<SqliteStore>> {
    let name = random_string(&SystemRng::new(), 12, KEY_ALPHABET).unwrap();
    let dir = std::env::temp_dir().join(format!("ots-sqlite-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    let store = ots_store_sqlite::connect(&format!("sqlite://{}/ots.db", dir.display()), true)
        .await
        .expect("open a fresh SQLite database");
    let mut fixture = Fixture::new(store);
    fixture.teardown = Some(Box::pin(async move {
        let _ = std::fs::remove_dir_all(&dir);
    }));
    Some(fixture)
}

contract_suite!(fresh());
