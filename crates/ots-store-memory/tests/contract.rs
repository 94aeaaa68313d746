//! The in-memory store against the contract every store must pass.

use ots_store_contract::{contract_suite, Fixture};
use ots_store_memory::MemoryStore;

async fn fresh() -> Option<Fixture<MemoryStore>> {
    Some(Fixture::new(MemoryStore::new()))
}

contract_suite!(fresh());
