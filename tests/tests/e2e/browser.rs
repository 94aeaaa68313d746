//! The pages in a real headless Chromium: create a secret on `/`, open its link, see that
//! loading the page did not reveal it, reveal it, reload and see it gone; the passphrase path;
//! the burn path. Screenshots of every page land in `target/screenshots/`.

use fantoccini::Locator;
use ots_tests::browser::Browser;
use ots_tests::{free_port, Config, Server, TempDir};

async fn value_of(browser: &Browser, css: &str) -> String {
    let element = browser.client.find(Locator::Css(css)).await.expect(css);
    element
        .prop("value")
        .await
        .expect("value")
        .unwrap_or_default()
}

async fn text_of(browser: &Browser, css: &str) -> String {
    browser
        .client
        .find(Locator::Css(css))
        .await
        .expect(css)
        .text()
        .await
        .expect("text")
}

async fn click(browser: &Browser, css: &str) {
    browser
        .client
        .find(Locator::Css(css))
        .await
        .expect(css)
        .click()
        .await
        .expect("click");
}

/// Waits (up to 15 s) for an element of the page a click navigated to.
async fn wait_for(browser: &Browser, css: &str) {
    browser
        .client
        .wait()
        .at_most(std::time::Duration::from_secs(15))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css} appeared: {e}"));
}

async fn type_into(browser: &Browser, css: &str, text: &str) {
    browser
        .client
        .find(Locator::Css(css))
        .await
        .expect(css)
        .send_keys(text)
        .await
        .expect("type");
}

/// Creates a secret through the form; returns (share link, creator page URL).
async fn create(
    browser: &Browser,
    server: &Server,
    secret: &str,
    passphrase: &str,
    shot: &str,
) -> (String, String) {
    browser.client.goto(&server.url("/")).await.unwrap();
    type_into(browser, "#secret", secret).await;
    if !passphrase.is_empty() {
        type_into(browser, "#passphrase", passphrase).await;
    }
    if !shot.is_empty() {
        browser.screenshot(shot).await;
    }
    click(browser, "#create").await;
    wait_for(browser, "#link").await;
    let private = browser.client.current_url().await.unwrap().to_string();
    assert!(private.contains("/private/"), "{private}");
    (value_of(browser, "#link").await, private)
}

async fn api_state(server: &Server, private_url: &str) -> String {
    let key = private_url.rsplit('/').next().unwrap();
    let (_, md) = crate::get(
        &reqwest::Client::new(),
        &server.url(&format!("/api/v1/private/{key}")),
    )
    .await;
    md["state"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_open_reveal_reload_passphrase_and_burn_in_chromium() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let data = TempDir::new("browser");
    let port = free_port();
    let mut config = Config::sqlite(&data.0);
    config.set("OTS_PUBLIC_URL", &format!("http://127.0.0.1:{port}"));
    let server = Server::start_on(&config, port).await;

    // Create, open the link: the page offers a button and reveals nothing by itself.
    let (link, private) = create(
        &browser,
        &server,
        "correct horse battery staple",
        "",
        "1-create",
    )
    .await;
    assert!(
        link.starts_with(&format!("http://127.0.0.1:{port}/secret/")),
        "{link}"
    );
    assert!(text_of(&browser, "#state").await.contains("Waiting"));
    browser.screenshot("2-creator").await;
    browser.client.goto(&link).await.unwrap();
    browser.screenshot("3-recipient-before-reveal").await;
    assert!(!browser
        .client
        .source()
        .await
        .unwrap()
        .contains("correct horse"));
    assert_eq!(
        api_state(&server, &private).await,
        "new",
        "loading the page did not reveal it"
    );

    click(&browser, "#reveal").await;
    wait_for(&browser, "#value").await;
    assert_eq!(
        value_of(&browser, "#value").await,
        "correct horse battery staple"
    );
    browser.screenshot("4-revealed").await;
    assert_eq!(api_state(&server, &private).await, "received");

    // Reload the link: gone.
    browser.client.goto(&link).await.unwrap();
    assert_eq!(
        text_of(&browser, "#heading").await,
        "This secret is not here"
    );
    browser.screenshot("5-gone").await;
    browser.client.goto(&private).await.unwrap();
    assert!(text_of(&browser, "#state").await.contains("Viewed at"));
    browser.screenshot("6-creator-after").await;

    // Passphrase: a wrong one says how many tries are left and keeps the secret.
    let (link, _) = create(&browser, &server, "behind a passphrase", "open sesame", "").await;
    browser.client.goto(&link).await.unwrap();
    type_into(&browser, "#passphrase", "wrong").await;
    click(&browser, "#reveal").await;
    wait_for(&browser, "#error").await;
    assert!(text_of(&browser, "#error").await.contains("9 tries left"));
    browser.screenshot("7-wrong-passphrase").await;
    type_into(&browser, "#passphrase", "open sesame").await;
    click(&browser, "#reveal").await;
    wait_for(&browser, "#value").await;
    assert_eq!(value_of(&browser, "#value").await, "behind a passphrase");

    // Burn: confirm, then the link no longer works.
    let (link, private) = create(&browser, &server, "to be burned", "", "").await;
    click(&browser, "#confirm").await;
    click(&browser, "#burn").await;
    wait_for(&browser, ".state-burned").await;
    assert!(text_of(&browser, "#state").await.contains("Burned at"));
    browser.screenshot("8-burned").await;
    assert_eq!(api_state(&server, &private).await, "burned");
    browser.client.goto(&link).await.unwrap();
    assert_eq!(
        text_of(&browser, "#heading").await,
        "This secret is not here"
    );

    browser.close().await;
}
