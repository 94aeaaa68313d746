# ots: one-time secrets. `just` lists the recipes.

default:
    @just --list

# Serve on the embedded default (SQLite in ./ots-data) at http://127.0.0.1:7143
run:
    cargo run --release -- serve

# Every test (set TEST_DATABASE_URL to run the Postgres ones, e.g. postgres://postgres@127.0.0.1:5432/test)
test:
    cargo test --workspace

# Regenerate the committed OpenAPI spec under openapi/
openapi:
    cargo run -q -p ots-server -- openapi --write openapi

# What CI checks: fmt, clippy, tests (Postgres included), spec drift
check:
    bash .ci/run

# Load benchmark of the release binary on each store (BENCH_PG_URL adds Postgres and pgbench)
bench:
    cargo build --release -p ots-server -p ots-bench
    BENCH_PG_URL="${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/test}" target/release/ots-bench

# Instructions per pair and per status request on the memory store, under callgrind (needs valgrind)
callgrind:
    cargo build --release -p ots-server
    crates/ots-bench/callgrind.sh target/release/ots
