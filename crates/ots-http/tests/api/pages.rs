//! The browser pages: create, the creator's page, reveal on a button press.

use super::*;

async fn page<E: Endpoint>(
    req: TestRequestBuilder<'_, E>,
) -> (StatusCode, poem::http::HeaderMap, String) {
    let resp = req.send().await.0;
    let (status, headers) = (resp.status(), resp.headers().clone());
    (
        status,
        headers,
        resp.into_body().into_string().await.unwrap(),
    )
}

fn csrf_of(headers: &poem::http::HeaderMap) -> String {
    let cookie = headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned()
}

#[tokio::test]
async fn a_plain_get_never_reveals_and_forms_need_the_csrf_token() {
    let h = harness().await;
    let body = h
        .share(&[("secret", "page secret"), ("passphrase", "pp")])
        .await;
    let key = body["secret_key"].as_str().unwrap();
    let metadata_key = body["metadata_key"].as_str().unwrap();

    let (status, headers, html) = page(h.cli.get(format!("/secret/{key}"))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Reveal the secret") && html.contains("name=\"passphrase\""));
    assert!(!html.contains("page secret"));
    for (name, value) in [
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
        ("x-frame-options", "DENY"),
    ] {
        assert_eq!(headers.get(name).unwrap(), value);
    }
    assert!(headers
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    let (_, _, md) = send(h.cli.get(format!("/api/v1/private/{metadata_key}"))).await;
    assert_eq!(md["state"], "new", "loading the page did not reveal it");

    let csrf = csrf_of(&headers);
    let cookie = format!("ots_csrf={csrf}");
    let (status, _, _) = page(
        h.cli
            .post(format!("/secret/{key}"))
            .form(&[("csrf", "x".repeat(32)), ("passphrase", "pp".into())])
            .header(header::COOKIE, &cookie),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a forged form is refused");
    let (status, _, html) = page(
        h.cli
            .post(format!("/secret/{key}"))
            .form(&[("csrf", csrf.as_str()), ("passphrase", "nope")])
            .header(header::COOKIE, &cookie),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(html.contains("2 tries left"), "{html}");
    let (status, _, html) = page(
        h.cli
            .post(format!("/secret/{key}"))
            .form(&[("csrf", csrf.as_str()), ("passphrase", "pp")])
            .header(header::COOKIE, &cookie),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("page secret"));
    let (status, _, html) = page(h.cli.get(format!("/secret/{key}"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("This secret is not here"));
}

#[tokio::test]
async fn values_are_escaped_in_pages() {
    let h = harness().await;
    let body = h.share(&[("secret", "<script>alert(1)</script>")]).await;
    let key = body["secret_key"].as_str().unwrap();
    let (_, headers, _) = page(h.cli.get(format!("/secret/{key}"))).await;
    let csrf = csrf_of(&headers);
    let (_, _, html) = page(
        h.cli
            .post(format!("/secret/{key}"))
            .form(&[("csrf", csrf.as_str())])
            .header(header::COOKIE, format!("ots_csrf={csrf}")),
    )
    .await;
    assert!(html.contains("&lt;script&gt;alert(1)&lt;"), "{html}");
    assert!(!html.contains("<script>alert(1)"));
}

#[tokio::test]
async fn create_and_burn_through_the_forms() {
    let h = harness().await;
    let (_, headers, html) = page(h.cli.get("/")).await;
    assert!(html.contains("Share a secret"));
    let csrf = csrf_of(&headers);
    let cookie = format!("ots_csrf={csrf}");
    let resp = h
        .cli
        .post("/")
        .form(&[
            ("csrf", csrf.as_str()),
            ("secret", "from the form"),
            ("ttl", "3600"),
        ])
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .0;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let location = resp
        .headers()
        .get(header::LOCATION)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let metadata_key = location.trim_start_matches("/private/").to_owned();
    let (_, _, md) = send(h.cli.get(format!("/api/v1/private/{metadata_key}"))).await;
    assert_eq!(
        (md["ttl"].as_i64(), md["state"].as_str()),
        (Some(3600), Some("new"))
    );
    let (_, _, html) = page(h.cli.get(&location)).await;
    let html = html.replace("&#x2f;", "/");
    assert!(html.contains(&format!(
        "http://127.0.0.1:7143/secret/{}",
        md["secret_key"].as_str().unwrap()
    )));

    let (status, _, _) = page(
        h.cli
            .post(format!("{location}/burn"))
            .form(&[("csrf", csrf.as_str())])
            .header(header::COOKIE, &cookie),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "burning needs the confirmation box"
    );
    let resp = h
        .cli
        .post(format!("{location}/burn"))
        .form(&[("csrf", csrf.as_str()), ("confirm", "yes")])
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .0;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let (_, _, md) = send(h.cli.get(format!("/api/v1/private/{metadata_key}"))).await;
    assert_eq!(md["state"], "burned");
    let (_, _, html) = page(h.cli.get(&location)).await;
    assert!(html.contains("Burned at"));

    let (status, _, html) = page(
        h.cli
            .post("/")
            .form(&[("csrf", csrf.as_str()), ("secret", "")])
            .header(header::COOKIE, &cookie),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("You did not provide anything to share"));
}
