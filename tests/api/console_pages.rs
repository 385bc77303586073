//! The web console's pages (API.md v2, "Web pages") as HTTP sees them: each page with a
//! strict Content-Security-Policy and no inline code, its static files under a versioned,
//! immutable path, `console.enabled = false` removing them all. What the pages do is
//! tested in a real browser (`tests/browser/`).

use reqwest::Method;

use crate::helpers::{Backend, TestApp, assert_problem, header, spawn_app, spawn_app_with};

dual_backend_tests!(
    every_page_is_served_with_a_strict_policy,
    static_files_are_versioned_and_immutable,
    pages_take_only_get_and_head,
    a_disabled_console_serves_no_page,
);

const UID: &str = "MDE5MGFiY2QtMDAwMC03MDAwLTgwMDAtMDAwMDAwMDAwMDAw";
const PAGES: [&str; 5] = [
    "/console",
    "/console/admin",
    "/activate/{UID}/abc-123",
    "/password/reset/{UID}/abc-123",
    "/email/confirm/{UID}/abc-123",
];

fn page_paths() -> Vec<String> {
    PAGES.iter().map(|p| p.replace("{UID}", UID)).collect()
}

/// The static URLs a page names (`/console/static/<version>/<file>`).
fn static_urls(html: &str) -> Vec<String> {
    html.match_indices("/console/static/")
        .map(|(at, _)| {
            html[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "/._-".contains(*c))
                .collect()
        })
        .collect()
}

async fn every_page_is_served_with_a_strict_policy(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in page_paths() {
        let resp = app.get(&path).await;
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(
            header(&resp, "content-type").as_deref(),
            Some("text/html; charset=utf-8")
        );
        let csp = header(&resp, "content-security-policy").unwrap_or_default();
        for directive in [
            "default-src 'self'",
            "script-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(
                csp.contains(directive),
                "{path}: CSP `{csp}` lacks {directive}"
            );
        }
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(
            header(&resp, "x-content-type-options").as_deref(),
            Some("nosniff")
        );
        let referrer = header(&resp, "referrer-policy");
        if !path.starts_with("/console") {
            assert_eq!(
                referrer.as_deref(),
                Some("no-referrer"),
                "{path}: token in URL"
            );
        }
        let html = resp.text().await.expect("body");
        assert_no_inline_code(&path, &html);
        assert!(!static_urls(&html).is_empty(), "{path} loads its files");
    }
}

/// What the policy would block anyway, caught before a browser does: inline scripts,
/// event-handler attributes, inline styles, `javascript:` URLs.
fn assert_no_inline_code(path: &str, html: &str) {
    let lower = html.to_ascii_lowercase();
    for (at, _) in lower.match_indices("<script") {
        let tag = &lower[at..at + lower[at..].find('>').expect("closed tag")];
        assert!(tag.contains(" src="), "{path}: inline script `{tag}`");
    }
    for bad in [
        " style=",
        "<style",
        "javascript:",
        " onclick=",
        " onload=",
        " onsubmit=",
    ] {
        assert!(!lower.contains(bad), "{path}: `{bad}`");
    }
}

async fn static_files_are_versioned_and_immutable(backend: Backend) {
    let app = spawn_app(backend).await;
    let html = app.get("/console").await.text().await.expect("body");
    let urls = static_urls(&html);
    for url in &urls {
        let resp = app.get(url).await;
        assert_eq!(resp.status(), 200, "{url}");
        assert_eq!(
            header(&resp, "cache-control").as_deref(),
            Some("public, max-age=31536000, immutable"),
            "{url}"
        );
        assert_eq!(
            header(&resp, "x-content-type-options").as_deref(),
            Some("nosniff")
        );
        let kind = header(&resp, "content-type").unwrap_or_default();
        let expected = if url.ends_with(".js") {
            "text/javascript"
        } else if url.ends_with(".css") {
            "text/css"
        } else {
            ""
        };
        assert!(kind.starts_with(expected), "{url}: {kind}");
    }
    // The client sits beside the console's modules, the very module `/sdk/latchkey.js` is.
    let version_dir = urls[0].rsplit_once('/').expect("a file").0;
    let sdk = app.get(&format!("{version_dir}/latchkey.js")).await;
    assert_eq!(sdk.text().await.expect("body"), latchkey::console::SDK);
    // Another version, a file that is not there, or a path out: not found.
    let other = urls[0].replace(&version_dir["/console/static/".len()..], "000000000000");
    for url in [
        other,
        format!("{version_dir}/nope.js"),
        format!("{version_dir}/..%2Fmod.rs"),
    ] {
        assert_problem(app.get(&url).await, 404, "not_found").await;
    }
}

async fn pages_take_only_get_and_head(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in page_paths() {
        let resp = app
            .client
            .request(Method::POST, app.url(&path))
            .send()
            .await
            .expect("request failed");
        assert_eq!(
            header(&resp, "allow").as_deref(),
            Some("GET, HEAD"),
            "{path}"
        );
        assert_problem(resp, 405, "method_not_allowed").await;
        let head = app
            .client
            .request(Method::HEAD, app.url(&path))
            .send()
            .await
            .expect("request failed");
        assert_eq!(head.status(), 200, "HEAD {path}");
        assert_eq!(
            header(&head, "content-type").as_deref(),
            Some("text/html; charset=utf-8")
        );
        assert!(
            head.bytes().await.expect("body").is_empty(),
            "HEAD has no body"
        );
    }
}

async fn a_disabled_console_serves_no_page(backend: Backend) {
    let enabled = spawn_app(backend.clone()).await;
    let html = enabled.get("/console").await.text().await.expect("body");
    let app: TestApp = spawn_app_with(backend, |s| s.console.enabled = false).await;
    for path in page_paths().into_iter().chain(static_urls(&html)) {
        assert_problem(app.get(&path).await, 404, "not_found").await;
    }
    // The API is unchanged (the browser client too: single-page apps import it).
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.get("/sdk/latchkey.js").await.status(), 200);
}
