//! The outermost middleware: gives every request an id (`X-Request-Id`, honoured when the
//! client or proxy sent a sane one, generated otherwise, echoed in the response), counts
//! and times it in the metrics by route template, and writes the one access-log line.
//! The line holds the method, route, status, latency, client and id, never the query
//! string or a header value that could carry a secret.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, web};

use super::state::AppState;
use super::throttle::Caller;
use crate::metrics::{OutcomeLabels, RequestLabels};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// actix-governor marks requests a scope let through unmetered; every request is exempt
/// from at least one of our scopes, so the header would only confuse clients.
const WHITELISTED: HeaderName = HeaderName::from_static("x-ratelimit-whitelisted");

/// The request's id, for handlers that log.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// An incoming id is kept if it is short and plain (it ends up in logs and headers).
fn sane_request_id(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let ok = (1..=128).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(&b));
    ok.then(|| text.to_owned())
}

/// The label of an unknown method or path.
const OTHER: &str = "other";

/// The method's label: one of the methods HTTP defines, or [`OTHER`].
fn known_method(method: &Method) -> &'static str {
    [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
    ]
    .iter()
    .find(|known| *known == method)
    .map_or(OTHER, |known| known.as_str())
}

/// What a login's status says about its outcome.
fn login_outcome(status: u16) -> &'static str {
    match status {
        200 => "success",
        400 => "invalid_request",
        401 => "invalid_credentials",
        403 => "inactive",
        429 => "throttled",
        503 => "unavailable",
        _ => "error",
    }
}

pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(sane_request_id)
        .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let client = Caller::client_ip(&req);
    let state = req.app_data::<web::Data<AppState>>().cloned();

    let mut res = next.call(req).await?;

    let elapsed = started.elapsed();
    let request = res.request();
    let method = request.method().to_string();
    // Labels take a bounded set of values whatever clients send (API.md, /metrics): a
    // made-up method or an unknown path is `other`, never a new series.
    let method_label = known_method(request.method());
    let route = request.match_pattern().unwrap_or_else(|| OTHER.to_owned());
    let path = request.path().to_owned();
    let status = res.status().as_u16();
    if let Some(state) = state {
        let labels = RequestLabels {
            method: method_label,
            route: route.clone(),
            status,
        };
        state.metrics.requests.get_or_create(&labels).inc();
        state
            .metrics
            .request_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if route == "/auth/login" && method_label == "POST" {
            let outcome = login_outcome(status);
            state
                .metrics
                .logins
                .get_or_create(&OutcomeLabels { outcome })
                .inc();
        }
    }
    let headers = res.headers_mut();
    headers.remove(&WHITELISTED);
    // Nothing the API answers may be kept by a cache unless the route says otherwise
    // (JWKS, discovery): token pairs above all (API.md, Tokens).
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert(REQUEST_ID, value);
    }
    let ms = elapsed.as_secs_f64() * 1000.0;
    let client = client.map_or_else(|| "-".to_owned(), |ip| ip.to_string());
    log::info!(
        target: "latchkey::access",
        method = method.as_str(), route = route.as_str(), status, latency_ms = ms,
        client = client.as_str(), request_id = id.as_str();
        "{client} \"{method} {path}\" {status} {ms:.2}ms id={id}"
    );
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_kept_only_when_plain() {
        let keep = HeaderValue::from_static("abc-123_x.y:z");
        assert_eq!(sane_request_id(&keep).as_deref(), Some("abc-123_x.y:z"));
        for bad in ["", "a b", "x\"y", &"a".repeat(129)] {
            let value = HeaderValue::from_str(bad).expect("header value");
            assert_eq!(sane_request_id(&value), None, "{bad:?}");
        }
    }
}
