//! The merging lanes keep their connection between statements (so a statement is one round
//! trip, with no ping on release) and give it back to the pool once idle.

use std::time::{Duration, Instant};

use ots_domain::{CustId, SecretRepository};
use ots_store_contract::{record, share_and_reveal};
use ots_store_postgres::testing::fresh_database;
use ots_store_postgres::PgSettings;

/// Connections the pool has handed out and not had back.
fn out_of_pool(pool: &sqlx::PgPool) -> u32 {
    pool.size() - pool.num_idle() as u32
}

/// Waits up to `within` for `out_of_pool` to be `want`, and returns what it last saw.
async fn settles_at(pool: &sqlx::PgPool, want: u32, within: Duration) -> u32 {
    let deadline = Instant::now() + within;
    loop {
        let seen = out_of_pool(pool);
        if seen == want || Instant::now() > deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_lane_keeps_its_connection_while_used_and_gives_it_back_when_idle() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let settings = PgSettings {
        max_connections: 3,
        merged_in_flight: 2,
        ..PgSettings::default()
    };
    let store = ots_store_postgres::connect(&db.url, &settings)
        .await
        .expect("connect and migrate");
    let pool = store
        .lanes_pool()
        .expect("the lanes have a pool of their own")
        .clone();
    assert_eq!(
        settles_at(&pool, 0, Duration::from_secs(2)).await,
        0,
        "nothing holds a connection before the first share"
    );

    let now = 1_700_000_000;
    for _ in 0..20 {
        assert!(
            share_and_reveal(&store, now).await,
            "the share is revealed once"
        );
    }
    // The two lanes take turns at the queue, each keeping the connection it last used.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        out_of_pool(&pool),
        2,
        "each lane keeps its connection between statements"
    );
    // A read still gets a connection from the pool beside them.
    let (secret, metadata) = record(&CustId::anonymous(), now, 3600, false);
    store
        .create(&secret, &metadata, None)
        .await
        .expect("create");
    assert!(store
        .find_secret(&secret.id, now + 1)
        .await
        .expect("find")
        .is_some());

    // Idle for over a second, the lanes give their connections back.
    assert_eq!(
        settles_at(&pool, 0, Duration::from_secs(4)).await,
        0,
        "idle lanes give their connections back to the pool"
    );
    pool.close().await;
    db.drop_database().await;
}
