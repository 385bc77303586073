//! The OpenAPI 3.1 document of the API. Operations come from the handlers'
//! `#[utoipa::path]` attributes, bodies from the [`schemas`] and the views; [`document`]
//! then adds what the attributes would only repeat: the server, and the problem+json
//! responses of every operation.
//!
//! A handler's attribute names the problems specific to it in the operation extension
//! `x-problems` (a list of [`ProblemCode`]s). The ones that follow from the operation's
//! shape are added here, so they cannot be forgotten on one endpoint: a JSON body can be
//! malformed, too large, too slow or invalid; a Bearer-protected operation can lack or fail its token
//! (and needs the database to load the user); an operation that takes `X-Token-Transport`
//! can fail its CSRF check (and sets the refresh cookie); a throttled path can answer 429; anything
//! that can fail can fail unexpectedly (500). Each status then becomes one response whose
//! examples are keyed by `code`.

pub mod html;
pub mod schemas;

use std::collections::{BTreeMap, BTreeSet};

use utoipa::openapi::example::Example;
use utoipa::openapi::header::Header;
use utoipa::openapi::info::License;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::schema::{AdditionalProperties, ArrayItems, Object, Ref, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::server::Server;
use utoipa::openapi::{Content, OpenApi as Document, RefOr, Response};
use utoipa::{Modify, OpenApi, ToSchema};

use super::browser::TRANSPORT_HEADER;
use super::error::ProblemCode;

/// The name of the Bearer security scheme: the route attributes spell it out in
/// `security(("bearer" = []))`.
const BEARER: &str = "bearer";

/// The operation extension in which a handler lists its own problems.
const PROBLEMS_EXTENSION: &str = "x-problems";

/// The operation extension that marks an operation the throttle counts (set from the
/// route table, which knows each route's scope).
pub const THROTTLED_EXTENSION: &str = "x-throttled";

const PROBLEM_JSON: &str = "application/problem+json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "latchkey",
        version = env!("CARGO_PKG_VERSION"),
        description = include_str!("openapi/description.md"),
    ),
    components(schemas(Problem)),
    modifiers(&BearerScheme),
    tags(
        (name = "Registration and activation", description = "Creating an account and proving the email address."),
        (name = "Login and tokens", description = "Access and refresh tokens: issuing, rotating, checking, revoking."),
        (name = "Password", description = "Changing a known password, or resetting a forgotten one by email."),
        (name = "Current user", description = "The caller's own account."),
        (name = "Two-factor login", description = "TOTP and recovery codes: enrolment, status, turning it off. The second login step is `/auth/login/mfa`."),
        (name = "Administration", description = "Staff only: every other caller gets 403 `permission_denied`."),
        (name = "Service", description = "For other services and operators: keys, discovery, probes, metrics, this documentation."),
    )
)]
struct Base;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut Document) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some(
                "An access token from a token pair. A refresh token is never accepted here.",
            ))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(BEARER, SecurityScheme::Http(scheme));
    }
}

/// The whole document: `operations` (the `#[utoipa::path]`s of the routes) on top of the
/// base, served from `public_url`, with every problem response spelled out.
pub fn document(operations: Document, public_url: &str) -> Result<Document, serde_json::Error> {
    let mut doc = Base::openapi();
    doc.merge(operations);
    // OpenAPI 3.1 takes an SPDX identifier; the derive only fills in the name.
    doc.info.license = Some(
        License::builder()
            .name(env!("CARGO_PKG_LICENSE"))
            .identifier(Some(env!("CARGO_PKG_LICENSE")))
            .build(),
    );
    doc.servers = Some(vec![Server::new(public_url)]);
    let mut used = BTreeSet::new();
    for item in doc.paths.paths.values_mut() {
        for operation in operations_mut(item) {
            let codes = problem_codes(operation)?;
            if takes_token_transport(operation) {
                add_cookie_headers(operation);
            }
            add_problem_responses(operation, &codes);
            used.extend(codes);
        }
    }
    let components = doc.components.get_or_insert_with(Default::default);
    components.examples = used
        .into_iter()
        .map(|code| {
            let example = Example::builder()
                .summary(code.title())
                .value(Some(code.example()))
                .build();
            (code.as_str().to_owned(), RefOr::T(example))
        })
        .collect();
    refer_to_components(&mut components.schemas);
    Ok(doc)
}

/// Replaces each nested schema that is a copy of a component by a reference to it:
/// utoipa inlines the type arguments of generics, so `Page<User>` would otherwise list
/// an anonymous object instead of a `User`.
fn refer_to_components(schemas: &mut BTreeMap<String, RefOr<Schema>>) {
    let named: Vec<(String, RefOr<Schema>)> = schemas
        .iter()
        .map(|(name, schema)| (name.clone(), schema.clone()))
        .collect();
    for schema in schemas.values_mut() {
        if let RefOr::T(schema) = schema {
            for child in children_mut(schema) {
                refer(child, &named);
            }
        }
    }
}

fn refer(schema: &mut RefOr<Schema>, named: &[(String, RefOr<Schema>)]) {
    if let Some((name, _)) = named.iter().find(|(_, component)| component == schema) {
        *schema = RefOr::Ref(Ref::from_schema_name(name));
    } else if let RefOr::T(inline) = schema {
        for child in children_mut(inline) {
            refer(child, named);
        }
    }
}

/// The schemas nested directly in `schema`.
fn children_mut(schema: &mut Schema) -> Vec<&mut RefOr<Schema>> {
    match schema {
        Schema::Object(o) => {
            let mut children: Vec<_> = o.properties.values_mut().collect();
            if let Some(values) = o.additional_properties.as_deref_mut()
                && let AdditionalProperties::RefOr(values) = values
            {
                children.push(values);
            }
            children
        }
        Schema::Array(a) => match &mut a.items {
            ArrayItems::RefOrSchema(items) => vec![items.as_mut()],
            ArrayItems::False => Vec::new(),
        },
        Schema::OneOf(o) => o.items.iter_mut().collect(),
        Schema::AllOf(a) => a.items.iter_mut().collect(),
        Schema::AnyOf(a) => a.items.iter_mut().collect(),
        _ => Vec::new(),
    }
}

/// Every operation of a path, in the order the document lists them.
fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// Whether `operation` takes `Authorization: Bearer <access token>`.
fn requires_bearer(operation: &Operation) -> bool {
    let bearer = SecurityRequirement::new(BEARER, Vec::<String>::new());
    operation
        .security
        .as_ref()
        .is_some_and(|requirements| requirements.contains(&bearer))
}

/// Whether `operation` takes `X-Token-Transport`, and so may set the refresh cookie.
fn takes_token_transport(operation: &Operation) -> bool {
    operation
        .parameters
        .iter()
        .flatten()
        .any(|p| matches!(p, RefOr::T(p) if p.name == TRANSPORT_HEADER))
}

/// `Set-Cookie` on the success responses of an operation that takes `X-Token-Transport`.
fn add_cookie_headers(operation: &mut Operation) {
    for (status, response) in operation.responses.responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        let about = match status.as_str() {
            "204" => "When the refresh cookie was used: the cookie cleared (`Max-Age=0`).",
            s if s.starts_with('2') => {
                "With `X-Token-Transport: cookie`: the refresh cookie (`HttpOnly; Secure; \
                 SameSite`, `Path` and `Domain` from `cookies.*`, `Max-Age` the refresh \
                 token's lifetime); `refresh_token` is then not in the body."
            }
            _ => continue,
        };
        let mut header = Header::new(Object::with_type(Type::String));
        header.description = Some(about.to_owned());
        response
            .headers
            .insert("Set-Cookie".to_owned(), RefOr::T(header));
    }
}

/// The handler's own problems (taken out of the extension, which has done its job) plus
/// those that follow from the operation's shape.
fn problem_codes(operation: &mut Operation) -> Result<BTreeSet<ProblemCode>, serde_json::Error> {
    let (listed, throttled) = match operation.extensions.as_mut() {
        Some(extensions) => (
            extensions.remove(PROBLEMS_EXTENSION),
            extensions.remove(THROTTLED_EXTENSION).is_some(),
        ),
        None => (None, false),
    };
    if operation.extensions.as_ref().is_some_and(|e| e.is_empty()) {
        operation.extensions = None;
    }
    let mut codes: BTreeSet<ProblemCode> = match listed {
        Some(value) => serde_json::from_value(value)?,
        None => BTreeSet::new(),
    };
    if operation.request_body.is_some() {
        codes.extend([
            ProblemCode::MalformedRequest,
            ProblemCode::ValidationFailed,
            ProblemCode::RequestTimeout,
            ProblemCode::PayloadTooLarge,
        ]);
    }
    if takes_token_transport(operation) {
        codes.insert(ProblemCode::CsrfFailed);
    }
    if requires_bearer(operation) {
        codes.extend([
            ProblemCode::NotAuthenticated,
            ProblemCode::TokenInvalid,
            ProblemCode::ServiceUnavailable,
        ]);
    }
    if throttled {
        codes.insert(ProblemCode::Throttled);
    }
    if !codes.is_empty() {
        codes.insert(ProblemCode::InternalError);
    }
    Ok(codes)
}

/// One response per status, its description listing when each code is given and its
/// examples (in `components/examples`) keyed by code; a status the attribute already
/// documents is replaced.
fn add_problem_responses(operation: &mut Operation, codes: &BTreeSet<ProblemCode>) {
    let mut by_status: BTreeMap<u16, Vec<ProblemCode>> = BTreeMap::new();
    for &code in codes {
        by_status
            .entry(code.status().as_u16())
            .or_default()
            .push(code);
    }
    for (status, codes) in by_status {
        let description = codes
            .iter()
            .map(|code| format!("`{}`: {}", code.as_str(), code.about().when))
            .collect::<Vec<_>>()
            .join("\n\n");
        let mut content = Content::new(Some(Ref::from_schema_name("Problem")));
        content.examples = codes
            .iter()
            .map(|code| {
                let example = Ref::new(format!("#/components/examples/{}", code.as_str()));
                (code.as_str().to_owned(), RefOr::Ref(example))
            })
            .collect();
        let mut response = Response::new(description);
        response
            .content
            .insert(PROBLEM_JSON.to_owned(), RefOr::T(content));
        for (name, about) in headers(&codes) {
            let mut header = Header::new(Object::with_type(Type::String));
            header.description = Some(about.to_owned());
            response.headers.insert(name.to_owned(), RefOr::T(header));
        }
        operation
            .responses
            .responses
            .insert(status.to_string(), RefOr::T(response));
    }
}

/// The headers `http::error` sets along with these problems.
fn headers(codes: &[ProblemCode]) -> Vec<(&'static str, &'static str)> {
    use ProblemCode::*;
    let mut headers = Vec::new();
    if codes.iter().any(|c| {
        matches!(
            c,
            NotAuthenticated | TokenInvalid | TokenRevoked | TokenReused
        )
    }) {
        headers.push((
            "WWW-Authenticate",
            "`Bearer` when no token was sent; `Bearer error=\"invalid_token\"` when the token failed.",
        ));
    }
    if codes
        .iter()
        .any(|c| matches!(c, Throttled | ServiceUnavailable))
    {
        headers.push(("Retry-After", "Seconds to wait before retrying."));
    }
    headers
}

/// RFC 9457 problem details: the body of every 4xx and 5xx response, served as
/// `application/problem+json`.
#[derive(ToSchema)]
#[schema(example = json!(ProblemCode::ValidationFailed.example()))]
#[expect(
    dead_code,
    reason = "describes what `http::error` writes; never built in Rust"
)]
pub struct Problem {
    /// Always `about:blank`: `code` is what identifies the problem.
    #[schema(rename = "type", example = "about:blank")]
    kind: String,
    /// A short, human-readable summary of the kind of problem.
    title: String,
    /// The HTTP status code.
    status: u16,
    /// What went wrong this time, for humans; never internals.
    detail: String,
    code: ProblemCode,
    /// On `validation_failed` only: field name (or `non_field_errors`) -> messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    errors: Option<BTreeMap<String, Vec<String>>>,
}

/// What is known about a problem code.
struct About {
    /// When the code is given (CommonMark, as the rest of the document).
    when: &'static str,
    /// A typical `detail`, for the examples.
    detail: &'static str,
}

/// The documentation of each code, beside the code table of `http::error`.
trait Documented {
    fn about(self) -> About;
    fn example(self) -> serde_json::Value;
}

impl Documented for ProblemCode {
    fn about(self) -> About {
        use ProblemCode::*;
        match self {
            MalformedRequest => About {
                when: "the body is not JSON, is not a JSON object, or is not sent as `application/json`.",
                detail: "body must be a JSON object",
            },
            ValidationFailed => About {
                when: "a field is missing, has the wrong JSON type, is `null`, is not allowed here, or fails validation; `errors` maps each field (or `non_field_errors`) to its messages.",
                detail: "password: This field is required.",
            },
            InvalidCredentials => About {
                when: "wrong username/email or password (the same answer for both).",
                detail: "no active account found with the given credentials",
            },
            NotAuthenticated => About {
                when: "no `Authorization: Bearer` header was sent.",
                detail: "authentication credentials were not provided",
            },
            TokenInvalid => About {
                when: "the token is malformed, badly signed, of the wrong algorithm, key, issuer, audience or type, or expired (`detail` says which), or its user no longer exists or is inactive.",
                detail: "token has expired",
            },
            TokenRevoked => About {
                when: "the refresh token was already rotated or blacklisted, or its family was revoked.",
                detail: "token has been revoked",
            },
            TokenReused => About {
                when: "an already rotated refresh token came back outside the grace window: the whole family is now revoked.",
                detail: "refresh token was reused; all tokens of this session are revoked",
            },
            AccountInactive => About {
                when: "the password is right but the account is not activated yet, is disabled, or awaits approval.",
                detail: "account is disabled",
            },
            PermissionDenied => About {
                when: "the caller is not staff, or the change would leave no active staff user.",
                detail: "staff only",
            },
            MfaRequired => About {
                when: "`mfa.required_for_staff` is on and the staff member's access token comes from a login without a second factor (its `amr` lacks `otp`): log in again with TOTP.",
                detail: "staff endpoints need a session that passed two-factor login",
            },
            CsrfFailed => About {
                when: "the refresh cookie was sent without `X-Token-Transport: cookie`, or `X-Token-Transport: cookie` came from an `Origin` that is neither `server.public_url`'s nor in `cors.allowed_origins`. Nothing was rotated or revoked.",
                detail: "the refresh cookie is only used with `X-Token-Transport: cookie`",
            },
            NotFound => About {
                when: "no such resource (or page).",
                detail: "not found",
            },
            MethodNotAllowed => About {
                when: "the path exists but not with this method.",
                detail: "method not allowed",
            },
            RequestTimeout => About {
                when: "the body did not arrive in time after the request head.",
                detail: "the request body did not arrive in time",
            },
            Conflict => About {
                when: "the username, email address or group name is already taken.",
                detail: "A user with that username already exists.",
            },
            PayloadTooLarge => About {
                when: "the body is over the limit (64 KiB).",
                detail: "request body is larger than 65536 bytes",
            },
            Throttled => About {
                when: "the rate limit of the caller's scope was hit; `Retry-After` says when to try again.",
                detail: "request was throttled; retry in 3 seconds",
            },
            InternalError => About {
                when: "an unexpected failure; the details are logged, never sent.",
                detail: "internal error",
            },
            ServiceUnavailable => About {
                when: "the database is unreachable or too many password checks are queued; `Retry-After` is set.",
                detail: "database is unavailable",
            },
        }
    }

    /// A body as the service sends it for this code.
    fn example(self) -> serde_json::Value {
        let mut body = serde_json::json!({
            "type": "about:blank",
            "title": self.title(),
            "status": self.status().as_u16(),
            "detail": self.about().detail,
            "code": self.as_str(),
        });
        if self == ProblemCode::ValidationFailed {
            body["errors"] = serde_json::json!({"password": ["This field is required."]});
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_spelled_as_serde_spells_them() {
        // Every variant, as the schema lists them (serde's spelling), maps back to itself.
        let schema = serde_json::to_value(<ProblemCode as utoipa::PartialSchema>::schema());
        let names = schema.unwrap()["enum"].as_array().unwrap().clone();
        assert!(names.len() > 10);
        for name in names {
            let code: ProblemCode = serde_json::from_value(name.clone()).unwrap();
            assert_eq!(name, code.as_str());
        }
    }

    #[utoipa::path(
        post,
        path = "/things",
        request_body = schemas::Empty,
        security(("bearer" = [])),
        responses((status = 204, description = "Done.")),
        extensions(
            ("x-problems" = json!([ProblemCode::Conflict])),
            ("x-throttled" = json!(true)),
        ),
    )]
    #[expect(dead_code, reason = "only its path attribute is used")]
    fn create_thing() {}

    #[utoipa::path(get, path = "/healthz", responses((status = 200, description = "Alive.")))]
    #[expect(dead_code, reason = "only its path attribute is used")]
    fn probe() {}

    #[derive(OpenApi)]
    #[openapi(paths(create_thing, probe))]
    struct Things;

    #[test]
    fn problems_follow_from_the_attribute_and_the_shape() {
        let doc = document(Things::openapi(), "https://id.example").unwrap();
        assert_eq!(doc.servers.unwrap()[0].url, "https://id.example");
        let operation = doc.paths.paths["/things"].post.as_ref().unwrap();
        let statuses: Vec<&str> = operation
            .responses
            .responses
            .keys()
            .map(String::as_str)
            .collect();
        // Listed (409), from the body (400, 408, 413), the token (401, 503), the throttle
        // (429), and 500 for anything that can fail.
        assert_eq!(
            statuses,
            [
                "204", "400", "401", "408", "409", "413", "429", "500", "503"
            ]
        );
        assert!(operation.extensions.is_none(), "x-problems is consumed");

        let probe = doc.paths.paths["/healthz"].get.as_ref().unwrap();
        assert_eq!(probe.responses.responses.len(), 1, "nothing to fail");
        let examples = &doc.components.unwrap().examples;
        assert!(examples.contains_key("conflict") && examples.contains_key("throttled"));
    }
}
