//! What other services fetch to verify tokens offline.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use serde_json::json;

use super::resource;
use crate::http::state::AppState;

/// Long enough to spare the service, short enough that a rotated-in key is picked up soon.
const JWKS_MAX_AGE_SECS: u32 = 300;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/.well-known/jwks.json").route(web::get().to(jwks)))
        .service(
            resource("/.well-known/openid-configuration")
                .route(web::get().to(openid_configuration)),
        );
}

async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((
            header::CACHE_CONTROL,
            format!("public, max-age={JWKS_MAX_AGE_SECS}"),
        ))
        .json(&state.tokens.keys().jwks)
}

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
