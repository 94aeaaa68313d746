//! End-to-end: the real `ots` binary, real SQLite files, a real Postgres, real HTTP.

mod admin;
mod at_rest;
mod browser;
mod client;
mod durability;
mod mail;
mod outage;
mod reference;
mod reveal_once;
mod upgrade;

use serde_json::Value;

/// POSTs a form and returns (status, JSON body).
pub async fn post_form(client: &reqwest::Client, url: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let resp = client.post(url).form(form).send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("JSON body"))
}

/// GETs and returns (status, JSON body).
pub async fn get(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let resp = client.get(url).send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("JSON body"))
}
