//! The self-description: `/openapi.json` covers every route with its bodies, security and
//! problem+json errors, and `/docs` renders it.

use reqwest::Method;
use serde_json::Value;

use crate::helpers::{Backend, PUBLIC_URL, TestApp, spawn_app};

dual_backend_tests!(
    document_lists_every_route_and_nothing_else,
    errors_are_problems,
    protected_operations_declare_bearer,
    browser_sessions_are_documented,
    every_reference_resolves,
    request_schemas_state_what_the_parsers_refuse,
    reference_page_shows_every_path,
    request_fields_state_their_constraints,
);

/// Every (method, path) the service serves (API.md and `src/http/routes`).
const ROUTES: &[(&str, &str)] = &[
    ("post", "/auth/register"),
    ("post", "/auth/activate"),
    ("post", "/auth/activate/resend"),
    ("post", "/auth/login"),
    ("post", "/auth/login/mfa"),
    ("get", "/users/me/mfa"),
    ("post", "/users/me/mfa/totp"),
    ("delete", "/users/me/mfa/totp"),
    ("post", "/users/me/mfa/totp/confirm"),
    ("post", "/users/me/mfa/recovery-codes"),
    ("delete", "/users/{id}/mfa"),
    ("post", "/auth/token/refresh"),
    ("post", "/auth/token/verify"),
    ("post", "/auth/logout"),
    ("post", "/auth/logout/all"),
    ("post", "/auth/password/reset"),
    ("post", "/auth/password/reset/confirm"),
    ("get", "/users/me"),
    ("patch", "/users/me"),
    ("delete", "/users/me"),
    ("post", "/users/me/password"),
    ("post", "/users/me/email"),
    ("post", "/auth/email/confirm"),
    ("post", "/users/me/username"),
    ("get", "/users"),
    ("get", "/users/{id}"),
    ("patch", "/users/{id}"),
    ("delete", "/users/{id}"),
    ("get", "/groups"),
    ("post", "/groups"),
    ("delete", "/groups/{name}"),
    ("get", "/.well-known/jwks.json"),
    ("get", "/sdk/latchkey.js"),
    ("get", "/users/me/sessions"),
    ("delete", "/users/me/sessions"),
    ("delete", "/users/me/sessions/{id}"),
    ("get", "/users/{id}/sessions"),
    ("get", "/.well-known/openid-configuration"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/docs"),
];

/// Operations that take `Authorization: Bearer`.
const PROTECTED: &[(&str, &str)] = &[
    ("post", "/auth/logout/all"),
    ("get", "/users/me/mfa"),
    ("post", "/users/me/mfa/totp"),
    ("delete", "/users/me/mfa/totp"),
    ("post", "/users/me/mfa/totp/confirm"),
    ("post", "/users/me/mfa/recovery-codes"),
    ("delete", "/users/{id}/mfa"),
    ("get", "/users/me"),
    ("patch", "/users/me"),
    ("delete", "/users/me"),
    ("post", "/users/me/password"),
    ("post", "/users/me/email"),
    ("post", "/users/me/username"),
    ("get", "/users"),
    ("get", "/users/{id}"),
    ("patch", "/users/{id}"),
    ("delete", "/users/{id}"),
    ("get", "/groups"),
    ("post", "/groups"),
    ("delete", "/groups/{name}"),
    ("get", "/users/me/sessions"),
    ("delete", "/users/me/sessions"),
    ("delete", "/users/me/sessions/{id}"),
    ("get", "/users/{id}/sessions"),
];

/// Paths whose operations take no body or token and need no database: nothing a client
/// could do about would fail, so a problem response is not required of them.
const INFALLIBLE: &[&str] = &[
    "/healthz",
    "/metrics",
    "/.well-known/jwks.json",
    "/.well-known/openid-configuration",
    "/openapi.json",
    "/docs",
];

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

const PROBLEM_REF: &str = "#/components/schemas/Problem";

/// `value`, or what its `$ref` points at within the document.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    let Some(r) = value["$ref"].as_str() else {
        return value;
    };
    let pointer = r
        .strip_prefix('#')
        .unwrap_or_else(|| panic!("external $ref {r}"));
    doc.pointer(pointer)
        .unwrap_or_else(|| panic!("dangling $ref {r}"))
}

async fn document(app: &TestApp) -> Value {
    let resp = app.get("/openapi.json").await;
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "content-type `{content_type}`"
    );
    // Not `json_ok`: the document names `password` fields, which that helper (rightly, for
    // every other answer) treats as a leak.
    resp.json().await.expect("/openapi.json is not JSON")
}

/// Every (method, path, operation) of the document.
fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let paths = doc["paths"].as_object().expect("no paths");
    let mut all = Vec::new();
    for (path, item) in paths {
        for method in METHODS {
            if let Some(op) = item.get(*method) {
                all.push((method.to_string(), path.clone(), op));
            }
        }
    }
    all
}

async fn document_lists_every_route_and_nothing_else(backend: Backend) {
    let app = spawn_app(backend).await;
    let doc = document(&app).await;
    let version = doc["openapi"].as_str().expect("no `openapi` version");
    assert!(version.starts_with("3.1"), "openapi {version}");
    assert_eq!(doc["info"]["title"], "latchkey");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(doc["info"]["license"]["identifier"], "GPL-3.0-or-later");
    assert_eq!(doc["servers"][0]["url"], PUBLIC_URL);

    let mut listed: Vec<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    let mut expected: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected);

    // And the list is what the router serves: an unknown route would be 404 `not_found`.
    for (method, path) in ROUTES {
        let concrete = path
            .replace("{id}", "0190b3c4-6f1e-7a52-9d2c-3f4e5a6b7c8d")
            .replace("{name}", "editors");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let resp = app
            .client
            .request(method.clone(), app.url(&concrete))
            .send()
            .await
            .expect("request failed");
        assert_ne!(resp.status(), 404, "{method} {concrete} is not served");
        assert_ne!(resp.status(), 405, "{method} {concrete} is not served");
    }
}

async fn errors_are_problems(backend: Backend) {
    let app = spawn_app(backend).await;
    let doc = document(&app).await;

    let problem = &doc["components"]["schemas"]["Problem"];
    for field in ["type", "title", "status", "detail", "code", "errors"] {
        assert!(
            problem["properties"].get(field).is_some(),
            "Problem lacks `{field}`: {problem}"
        );
    }
    let codes = problem["properties"]["code"]["$ref"]
        .as_str()
        .and_then(|r| r.rsplit('/').next())
        .map(|name| &doc["components"]["schemas"][name]["enum"])
        .or(Some(&problem["properties"]["code"]["enum"]))
        .and_then(Value::as_array)
        .expect("Problem.code lists no codes")
        .clone();
    for code in [
        "validation_failed",
        "not_authenticated",
        "throttled",
        "internal_error",
    ] {
        assert!(codes.contains(&Value::from(code)), "no code {code}");
    }

    for (method, path, op) in operations(&doc) {
        let responses = op["responses"].as_object().expect("no responses");
        let mut problems = 0;
        for (status, response) in responses {
            if !(status.starts_with('4') || status.starts_with('5')) {
                continue;
            }
            problems += 1;
            let content = &response["content"]["application/problem+json"];
            assert_eq!(
                content["schema"]["$ref"], PROBLEM_REF,
                "{method} {path} {status} is not a problem: {response}"
            );
            let examples = content["examples"].as_object().expect("no examples");
            assert!(!examples.is_empty(), "{method} {path} {status}: no codes");
            for (code, example) in examples {
                assert!(
                    codes.contains(&Value::from(code.as_str())),
                    "unknown {code}"
                );
                let example = resolve(&doc, example);
                assert_eq!(example["value"]["code"], code.as_str());
                assert_eq!(example["value"]["status"].to_string(), *status);
            }
        }
        if !INFALLIBLE.contains(&path.as_str()) {
            assert!(problems > 0, "{method} {path} documents no problem");
        }
        if op.get("requestBody").is_some() {
            let bad_body = &responses["400"]["content"]["application/problem+json"]["examples"];
            assert!(
                bad_body.get("validation_failed").is_some()
                    && bad_body.get("malformed_request").is_some(),
                "{method} {path}: a body can be malformed or invalid"
            );
            for status in ["408", "413"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path}: no {status}"
                );
            }
        }
    }
    // Spot checks of handler-specific problems.
    let examples = |method: &str, path: &str, status: &str| {
        doc["paths"][path][method]["responses"][status]["content"]["application/problem+json"]
            ["examples"]
            .clone()
    };
    assert!(
        examples("post", "/auth/register", "409")
            .get("conflict")
            .is_some()
    );
    assert!(
        examples("post", "/auth/login", "401")
            .get("invalid_credentials")
            .is_some()
    );
    assert!(
        examples("post", "/auth/login", "403")
            .get("account_inactive")
            .is_some()
    );
    assert!(
        examples("post", "/auth/token/refresh", "401")
            .get("token_reused")
            .is_some()
    );
    assert!(
        examples("get", "/users", "403")
            .get("permission_denied")
            .is_some()
    );
    assert!(
        examples("get", "/readyz", "503")
            .get("service_unavailable")
            .is_some()
    );
    assert!(
        doc["paths"]["/healthz"]["get"]["responses"]
            .get("429")
            .is_none(),
        "probes are never throttled"
    );
}

/// The operations that answer with a token pair, and refresh and logout, which read the
/// refresh cookie (API.md "Browser sessions").
const TOKEN_TRANSPORT: &[(&str, &str)] = &[
    ("post", "/auth/register"),
    ("post", "/auth/activate"),
    ("post", "/auth/login"),
    ("post", "/auth/login/mfa"),
    ("post", "/auth/token/refresh"),
    ("post", "/auth/logout"),
    ("post", "/users/me/password"),
];

async fn browser_sessions_are_documented(backend: Backend) {
    let app = spawn_app(backend).await;
    let doc = document(&app).await;
    for (method, path, op) in operations(&doc) {
        let header = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == "X-Token-Transport");
        let csrf = op["responses"]["403"]["content"]["application/problem+json"]["examples"]
            .get("csrf_failed");
        if !TOKEN_TRANSPORT.contains(&(method.as_str(), path.as_str())) {
            assert!(header.is_none() && csrf.is_none(), "{method} {path}");
            continue;
        }
        let header = header.unwrap_or_else(|| panic!("{method} {path}: no X-Token-Transport"));
        assert_eq!(header["in"], "header");
        assert!(csrf.is_some(), "{method} {path}: no 403 csrf_failed");
        let success = op["responses"]
            .as_object()
            .expect("responses")
            .iter()
            .find(|(status, _)| status.starts_with('2'))
            .expect("a success response");
        assert!(
            success.1["headers"].get("Set-Cookie").is_some(),
            "{method} {path}: no Set-Cookie on {}",
            success.0
        );
    }
}

async fn protected_operations_declare_bearer(backend: Backend) {
    let app = spawn_app(backend).await;
    let doc = document(&app).await;
    let scheme = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    assert_eq!(scheme["bearerFormat"], "JWT");
    for (method, path, op) in operations(&doc) {
        let protected = PROTECTED.contains(&(method.as_str(), path.as_str()));
        if protected {
            assert_eq!(
                op["security"],
                serde_json::json!([{"bearer": []}]),
                "{method} {path} should require a Bearer token"
            );
            let unauthenticated =
                &op["responses"]["401"]["content"]["application/problem+json"]["examples"];
            assert!(
                unauthenticated.get("not_authenticated").is_some(),
                "{method} {path}: no 401 not_authenticated"
            );
        } else {
            assert!(
                op.get("security").is_none(),
                "{method} {path} should be public: {}",
                op["security"]
            );
        }
    }
}

async fn every_reference_resolves(backend: Backend) {
    fn walk(doc: &Value, v: &Value, seen: &mut usize) {
        match v {
            Value::Object(map) => {
                if map.contains_key("$ref") {
                    resolve(doc, v);
                    *seen += 1;
                }
                map.values().for_each(|v| walk(doc, v, seen));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(doc, v, seen)),
            _ => {}
        }
    }
    let app = spawn_app(backend).await;
    let doc = document(&app).await;
    let mut seen = 0;
    walk(&doc, &doc, &mut seen);
    assert!(seen > 0);
    // A page of users is a page of `User`s, not of anonymous objects.
    assert_eq!(
        doc["components"]["schemas"]["Page_User"]["properties"]["results"]["items"]["$ref"],
        "#/components/schemas/User"
    );
    // Request bodies are documented field by field, and refuse other fields.
    let register = &doc["components"]["schemas"]["RegisterRequest"];
    assert_eq!(register["additionalProperties"], false);
    let required = register["required"].as_array().expect("no required fields");
    for field in ["username", "email", "password", "password_confirm"] {
        assert!(required.contains(&Value::from(field)), "{field} optional");
    }
    assert!(!required.contains(&Value::from("bio")), "bio required");
}

/// What the parsers refuse is in the document, so a schema-valid request is not refused
/// for a reason the schema hides (and a generator such as Schemathesis can use it).
async fn request_schemas_state_what_the_parsers_refuse(backend: Backend) {
    let app = spawn_app(backend).await;
    let doc = document(&app).await;
    let schema =
        |name: &str, field: &str| doc["components"]["schemas"][name]["properties"][field].clone();
    let pattern = |name: &str, field: &str| schema(name, field)["pattern"].clone();

    // `\p{Alpha}`, ECMA-262's alias of `\p{Alphabetic}`, which generators know.
    assert_eq!(
        pattern("RegisterRequest", "username"),
        r"^[\p{Alpha}\p{N}@.+_-]+$"
    );
    assert_eq!(pattern("NewGroup", "name"), r"^[\p{Alpha}\p{N}_.@+:-]+$");
    // NUL everywhere; control characters in names; line breaks only in the bio.
    assert_eq!(
        pattern("RegisterRequest", "password_confirm"),
        r"^[^\x00]*$"
    );
    assert_eq!(
        pattern("LoginRequest", "password"),
        Value::Null,
        "login is an allOf"
    );
    assert_eq!(
        pattern("ProfileUpdate", "first_name"),
        r"^[^\x00-\x1F\x7F-\x9F]*$"
    );
    assert_eq!(
        pattern("ProfileUpdate", "bio"),
        r"^[^\x00-\x08\x0B-\x0C\x0E-\x1F\x7F-\x9F]*$"
    );
    // Not entirely numeric, as the password policy counts digits.
    assert_eq!(
        pattern("ChangePasswordRequest", "new_password"),
        r"^[^\x00]*[^\x000-9][^\x00]*$"
    );
    // A JWT is three base64url parts.
    let jwt = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$";
    assert_eq!(pattern("RefreshTokenRequest", "refresh_token"), jwt);
    assert_eq!(pattern("VerifyRequest", "token"), jwt);
    // Lists have a length, claims have names they may not use.
    assert_eq!(schema("StaffUserUpdate", "groups")["maxItems"], 32);
    // Claims hold no NUL at any depth: a recursive schema.
    let claims = schema("StaffUserUpdate", "claims");
    assert_eq!(
        claims["additionalProperties"]["$ref"],
        "#/components/schemas/NulFreeJson"
    );
    let nul_free = doc["components"]["schemas"]["NulFreeJson"]["anyOf"].to_string();
    assert!(
        nul_free.contains(r##""$ref":"#/components/schemas/NulFreeJson""##),
        "{nul_free}"
    );
    let names = &claims["propertyNames"];
    assert_eq!(names["pattern"], r"^[^\x00-\x1F\x7F-\x9F]*$");
    let reserved = &names["not"]["enum"];
    assert!(
        reserved
            .as_array()
            .is_some_and(|names| names.contains(&Value::from("sub"))),
        "{reserved}"
    );
    // Page numbers and sizes are any integer of at least 1 (not `int64`).
    let params = doc["paths"]["/users"]["get"]["parameters"]
        .as_array()
        .expect("no parameters");
    for name in ["page", "page_size"] {
        let param = params.iter().find(|p| p["name"] == name).expect(name);
        assert_eq!(param["schema"]["type"], "integer", "{param}");
        assert_eq!(param["schema"]["minimum"], 1, "{param}");
        assert!(param["schema"].get("format").is_none(), "{param}");
        assert!(param["schema"].get("maximum").is_none(), "{param}");
    }
}

async fn reference_page_shows_every_path(backend: Backend) {
    let app = spawn_app(backend).await;
    let resp = app.get("/docs").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/html; charset=utf-8"
    );
    let html = resp.text().await.unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"), "{}", &html[..80]);
    // Self-contained: nothing to run, nothing to fetch.
    for outside in ["<script", "<link", "src=", "@import", "url("] {
        assert!(!html.contains(outside), "the page refers to `{outside}`");
    }
    for (method, path) in ROUTES {
        assert!(
            html.contains(&format!("<code>{path}</code>")),
            "{method} {path} is missing"
        );
    }
    assert!(
        html.contains("not_authenticated"),
        "problem codes are missing"
    );
    assert!(
        html.contains("id=\"schema-Problem\""),
        "schemas are missing"
    );

    let post = app
        .client
        .post(app.url("/docs"))
        .send()
        .await
        .expect("request failed");
    assert_eq!(post.status(), 405);
}

/// The object part of a request schema (login's is `allOf` the object and an `anyOf`).
fn body_object<'a>(doc: &'a Value, op: &'a Value) -> &'a Value {
    let schema = resolve(
        doc,
        &op["requestBody"]["content"]["application/json"]["schema"],
    );
    match schema["allOf"].as_array() {
        Some(parts) => &parts[0],
        None => schema,
    }
}

/// Every request field states the bounds the parser enforces (the document is built from
/// the same specs the handlers parse with): strings their `maxLength`, objects closed.
async fn request_fields_state_their_constraints(backend: Backend) {
    let app = spawn_app(backend).await;
    let doc = document(&app).await;
    let mut bodies = 0;
    for (method, path, op) in operations(&doc) {
        if op.get("requestBody").is_none() {
            continue;
        }
        bodies += 1;
        let object = body_object(&doc, op);
        assert_eq!(object["additionalProperties"], false, "{method} {path}");
        for (name, field) in object["properties"].as_object().expect("properties") {
            let field = resolve(&doc, field);
            let strings = match field["type"].as_str() {
                Some("string") => vec![field],
                Some("array") => vec![&field["items"]],
                _ => vec![],
            };
            for string in strings {
                assert!(
                    string["maxLength"].as_u64().is_some(),
                    "{method} {path}: `{name}` has no maxLength"
                );
            }
        }
    }
    assert_eq!(bodies, 22, "operations with a request body");

    let register = &doc["components"]["schemas"]["RegisterRequest"]["properties"];
    assert_eq!(register["username"]["minLength"], 1);
    assert_eq!(register["username"]["maxLength"], 150);
    assert!(register["username"]["pattern"].is_string());
    assert_eq!(register["email"]["format"], "email");
    assert_eq!(register["email"]["maxLength"], 254);
    // The configured policy minimum (8 by default), and the hard maximum.
    assert_eq!(register["password"]["minLength"], 8);
    assert_eq!(register["password"]["maxLength"], 256);

    let login = &doc["components"]["schemas"]["LoginRequest"];
    let one_of: Vec<&Value> = login["allOf"][1]["anyOf"]
        .as_array()
        .expect("login states that one of username and email is required")
        .iter()
        .map(|alternative| &alternative["required"])
        .collect();
    assert_eq!(
        one_of,
        [
            &serde_json::json!(["username"]),
            &serde_json::json!(["email"])
        ]
    );

    let list = &doc["paths"]["/users"]["get"]["parameters"];
    let ordering = list
        .as_array()
        .and_then(|params| params.iter().find(|p| p["name"] == "ordering"))
        .expect("ordering parameter");
    assert!(ordering["schema"]["pattern"].is_string(), "{ordering}");
}
