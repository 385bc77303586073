//! What other services fetch to verify tokens offline.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use serde_json::json;

use super::Route;
use crate::http::openapi::schemas::{JwkSet, OpenIdConfiguration};
use crate::http::state::AppState;

/// Long enough to spare the service, short enough that a rotated-in key is picked up soon.
const JWKS_MAX_AGE_SECS: u32 = 300;

pub(super) fn routes() -> Vec<Route> {
    vec![route!(Never, jwks), route!(Never, openid_configuration)]
}

#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    operation_id = "jwks",
    tag = "Service",
    summary = "The token verification keys",
    description = "Every key a token still in circulation may be signed with: the current \
                   one and still-valid previous ones. Empty under HS256.",
    responses((
        status = 200,
        description = "The JWK Set.",
        body = JwkSet,
        headers(("Cache-Control" = String, description = "`public, max-age=300`")),
    )),
)]
async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((
            header::CACHE_CONTROL,
            format!("public, max-age={JWKS_MAX_AGE_SECS}"),
        ))
        .json(&state.tokens.keys().jwks)
}

#[utoipa::path(
    get,
    path = "/.well-known/openid-configuration",
    operation_id = "openid_configuration",
    tag = "Service",
    summary = "OpenID Connect discovery",
    description = "A minimal discovery document, for libraries that find the keys this way.",
    responses((
        status = 200,
        description = "The discovery document.",
        body = OpenIdConfiguration,
        headers(("Cache-Control" = String, description = "`public, max-age=300`")),
    )),
)]
async fn openid_configuration(state: web::Data<AppState>) -> HttpResponse {
    let base = state.settings.public_url();
    HttpResponse::Ok()
        .insert_header((
            header::CACHE_CONTROL,
            format!("public, max-age={JWKS_MAX_AGE_SECS}"),
        ))
        .json(json!({
            "issuer": state.tokens.issuer(),
            "jwks_uri": format!("{base}/.well-known/jwks.json"),
            "token_endpoint": format!("{base}/auth/login"),
            "id_token_signing_alg_values_supported": [state.settings.jwt.algorithm.to_string()],
            "subject_types_supported": ["public"],
            "response_types_supported": ["token"],
        }))
}
