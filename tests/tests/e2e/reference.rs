//! Every `curl` line of the five reference pages, host swapped for the local server, gets the
//! response its page describes. `-d` and `-F` (which curl refuses to mix) are sent one at a
//! time.

use std::collections::BTreeSet;
use std::process::Command;

use ots_tests::{Config, Server, TempDir};
use serde_json::Value;

/// The pages' curl lines, host replaced by `HOST`, blanks folded.
const LINES: &[&str] = &[
    "curl -d 'secret=SECRET&ttl=NUMBER_IN_SECONDS' -u 'USERNAME:APITOKEN' -F 'secret=[SECRET]' HOST/api/v1/share",
    "curl -X POST -u 'USERNAME:APITOKEN' -d 'secret=SECRET&ttl=NUMBER_IN_SECONDS' HOST/api/v1/share",
    "curl -d 'secret=SECRET&ttl=NUMBER_IN_SECONDS' -u 'USERNAME:APITOKEN' HOST/api/v1/generate",
    "curl -X POST -u 'USERNAME:APITOKEN' -d 'ttl=NUMBER_IN_SECONDS' HOST/api/v1/generate",
    "curl -X POST -u 'USERNAME:APITOKEN' HOST/api/v1/secret/SECRET_KEY",
    "curl -X POST -u 'USERNAME:APITOKEN' HOST/api/v1/private/METADATA_KEY",
    "curl -X POST -u 'USERNAME:APITOKEN' HOST/api/v1/private/METADATA_KEY/burn",
    "curl -u 'USERNAME:APITOKEN' HOST/api/v1/private/recent",
    "curl -u 'USERNAME:APITOKEN' HOST/api/v1/status",
];

fn normalize(line: &str) -> String {
    let words: Vec<String> = line
        .split_whitespace()
        .map(|w| match w.find("/api/") {
            Some(i) if w.starts_with("http") => format!("HOST{}", &w[i..]),
            _ => w.to_owned(),
        })
        .collect();
    words.join(" ")
}

/// The curl lines found in `../shared/reference/*.txt`.
fn lines_in_reference_pages() -> Option<BTreeSet<String>> {
    let dir = ots_tests::workspace().join("../shared/reference");
    let entries = std::fs::read_dir(&dir).ok()?;
    let mut found = BTreeSet::new();
    for entry in entries.flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for line in text.lines() {
            if let Some(rest) = line.trim().strip_prefix("$ curl") {
                found.insert(normalize(&format!("curl{rest}")));
            }
        }
    }
    Some(found)
}

#[test]
fn the_list_covers_every_curl_line_of_the_reference_pages() {
    let Some(found) = lines_in_reference_pages() else {
        assert!(
            std::env::var("CI").is_err(),
            "../shared/reference is missing in CI"
        );
        ots_tests::announce_skip(
            "../shared/reference not found; the hard-coded list was checked only",
        );
        return;
    };
    assert!(
        found.len() >= 7,
        "expected the pages' curl lines, found {found:?}"
    );
    let known: BTreeSet<String> = LINES.iter().map(|l| normalize(l)).collect();
    let missing: Vec<_> = found.difference(&known).collect();
    assert!(missing.is_empty(), "curl lines not covered: {missing:?}");
}

/// `-d` and `-F` one at a time: a line with both becomes two.
fn variants(line: &str) -> Vec<String> {
    if !(line.contains(" -d ") && line.contains(" -F ")) {
        return vec![line.to_owned()];
    }
    let drop_option = |flag: &str| {
        let words: Vec<&str> = line.split(' ').collect();
        let mut out = Vec::new();
        let mut skip = false;
        for w in words {
            if skip {
                skip = false;
                continue;
            }
            if w == flag {
                skip = true;
                continue;
            }
            out.push(w);
        }
        out.join(" ")
    };
    vec![drop_option("-F"), drop_option("-d")]
}

fn curl(line: &str) -> (u16, Value) {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("{line} -sS -w '\\n%{{http_code}}'"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, status) = text
        .trim_end()
        .rsplit_once('\n')
        .unwrap_or(("", text.trim()));
    let status = status
        .parse()
        .unwrap_or_else(|_| panic!("no status from {line:?}: {text}"));
    (
        status,
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{line}: not JSON ({e}): {body}")),
    )
}

fn assert_metadata(body: &Value, line: &str) {
    assert_eq!(body["custid"], "USERNAME", "{line}: {body}");
    let key = body["metadata_key"].as_str();
    assert_eq!(
        key.map(str::len),
        Some(31),
        "{line}: metadata_key in {body}"
    );
    for field in ["ttl", "metadata_ttl", "created", "updated"] {
        assert!(
            body[field].is_i64(),
            "{line}: {field} is a number in {body}"
        );
    }
    assert!(body["passphrase_required"].is_boolean(), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reference_curl_line_gets_the_documented_response() {
    let data = TempDir::new("reference");
    let config = Config::sqlite(&data.0);
    let (code, _, err) = config.run(&["customer", "add", "USERNAME"], "");
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = config.run(&["token", "import", "USERNAME"], "APITOKEN\n");
    assert_eq!(code, 0, "{err}");
    let server = Server::start(&config).await;
    let host = server.url("");
    let client = reqwest::Client::new();
    let share = || async {
        let resp = client
            .post(server.url("/api/v1/share"))
            .basic_auth("USERNAME", Some("APITOKEN"))
            .form(&[("secret", "SECRET")])
            .send()
            .await
            .unwrap();
        let body: Value = resp.json().await.unwrap();
        (
            body["secret_key"].as_str().unwrap().to_owned(),
            body["metadata_key"].as_str().unwrap().to_owned(),
        )
    };

    let mut ran = 0;
    for template in LINES {
        for variant in variants(template) {
            let (secret_key, metadata_key) = share().await;
            let line = variant
                .replace("HOST", &host)
                .replace("NUMBER_IN_SECONDS", "3600")
                .replace("SECRET_KEY", &secret_key)
                .replace("METADATA_KEY", &metadata_key);
            if line.contains("/private/") && !line.contains("recent") && !line.contains("burn") {
                // "if or when it was viewed": view it first.
                crate::post_form(
                    &client,
                    &server.url(&format!("/api/v1/secret/{secret_key}")),
                    &[],
                )
                .await;
            }
            let (status, body) = curl(&line);
            assert_eq!(status, 200, "{line}: {body}");
            let route = line.split("/api/v1/").nth(1).unwrap_or_default();
            match route.split('/').next().unwrap_or_default() {
                "share" => {
                    assert_metadata(&body, &line);
                    let ttl = if line.contains("ttl=3600") {
                        3600
                    } else {
                        7 * 86400
                    };
                    assert_eq!(body["ttl"], ttl, "{line}");
                    assert_eq!(
                        body["secret_key"].as_str().map(str::len),
                        Some(31),
                        "{line}"
                    );
                    // The value that was stored is the one the line sent.
                    let key = body["secret_key"].as_str().unwrap();
                    let (_, secret) = crate::post_form(
                        &client,
                        &server.url(&format!("/api/v1/secret/{key}")),
                        &[],
                    )
                    .await;
                    let expected = if line.contains(" -F ") {
                        "[SECRET]"
                    } else {
                        "SECRET"
                    };
                    assert_eq!(secret["value"], expected, "{line}");
                }
                "generate" => {
                    assert_metadata(&body, &line);
                    assert_eq!(body["ttl"], 3600, "{line}");
                    assert_eq!(
                        body["value"].as_str().map(str::len),
                        Some(12),
                        "{line}: {body}"
                    );
                }
                "secret" => {
                    assert_eq!(body["secret_key"], secret_key.as_str());
                    assert_eq!(body["value"], "SECRET");
                }
                "private" if route.ends_with("/burn") => {
                    assert_metadata(&body, &line);
                    assert_eq!(body["state"], "burned");
                    assert!(body["burned"].is_i64());
                }
                "private" if route == "private/recent" => {
                    let items = body
                        .as_array()
                        .unwrap_or_else(|| panic!("{line}: a list, got {body}"));
                    assert!(!items.is_empty());
                    assert!(items.iter().all(|m| m["secret_key"].is_null()));
                }
                "private" => {
                    assert_metadata(&body, &line);
                    assert_eq!(body["state"], "received");
                    assert!(body["received"].is_i64(), "{line}: received time in {body}");
                }
                "status" => assert_eq!(body, serde_json::json!({"status": "nominal"})),
                other => panic!("unexpected route {other}"),
            }
            ran += 1;
        }
    }
    assert_eq!(
        ran,
        LINES.len() + 1,
        "every line ran (the -d/-F line twice)"
    );
}
