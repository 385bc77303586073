//! Request bodies: the JSON object extractor, and field-by-field parsing with DRF-style
//! messages against the operation's [`BodySpec`] (see [`super::body`]).
//!
//! The spec is the one the route table declared for the matched route and method, so the
//! handler parses with exactly what the OpenAPI document states. A handler that asks for a
//! field the spec lacks, asks with the wrong presence, or leaves a declared field unread is
//! a bug, reported as a 500 (and caught by the API tests, which reach every handler).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::{Method, header};
use actix_web::{FromRequest, HttpRequest, web};
use serde_json::{Map, Value};

use super::body::{BodySpec, FieldSpec, Kind, Text};
use super::error::{ApiError, FieldErrors};
use super::extractors::BODY_TIMEOUT;
use crate::domain::Problems;

/// The body specs of one resource, by method (resource-level app data).
#[derive(Default)]
pub struct BodySpecs(pub HashMap<Method, &'static BodySpec>);

/// A request body that is a JSON object, with the spec it is to be parsed by.
pub struct JsonBody {
    pub spec: &'static BodySpec,
    pub map: Map<String, Value>,
}

impl FromRequest for JsonBody {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let spec = req
            .app_data::<BodySpecs>()
            .and_then(|specs| specs.0.get(req.method()).copied());
        let absent = body_is_absent(req);
        let json = web::Json::<Value>::from_request(req, payload);
        Box::pin(async move {
            let spec = spec.ok_or_else(|| {
                ApiError::Internal("the route declares no body for this handler".into())
            })?;
            if absent && spec.may_be_absent() {
                return Ok(JsonBody {
                    spec,
                    map: Map::new(),
                });
            }
            // The server's own timeout covers only the request head; a client that stalls
            // mid-body would otherwise hold its connection and a worker's attention forever.
            let json = tokio::time::timeout(BODY_TIMEOUT, json)
                .await
                .map_err(|_| ApiError::RequestTimeout)?;
            match json?.into_inner() {
                Value::Object(map) => Ok(JsonBody { spec, map }),
                _ => Err(ApiError::Malformed("body must be a JSON object".into()).into()),
            }
        })
    }
}

/// No body at all: no `Content-Length` (or `0`) and no chunked transfer. A browser's
/// `fetch` with no body sends `Content-Length: 0`.
fn body_is_absent(req: &HttpRequest) -> bool {
    let headers = req.headers();
    let length = headers.get(header::CONTENT_LENGTH);
    let chunked = headers.contains_key(header::TRANSFER_ENCODING);
    !chunked && length.is_none_or(|len| len.as_bytes() == b"0")
}

pub const REQUIRED: &str = "This field is required.";

/// Takes fields out of a JSON object one by one, collecting every problem, then reports
/// them all at once (and any field the endpoint does not take) as `validation_failed`.
pub struct Fields {
    spec: &'static BodySpec,
    body: Map<String, Value>,
    errors: FieldErrors,
    /// Fields the handler asked for (to catch a spec field it never reads).
    read: Vec<&'static str>,
    /// Fields the body held (for the spec's "at least one of").
    present: Vec<&'static str>,
    /// A mismatch between the handler and its spec.
    bug: Option<String>,
}

impl Fields {
    pub fn new(body: JsonBody) -> Self {
        Self {
            spec: body.spec,
            body: body.map,
            errors: FieldErrors::new(),
            read: Vec::new(),
            present: Vec::new(),
            bug: None,
        }
    }

    /// Records problems for a field (from a domain type's parser, say).
    pub fn reject(&mut self, field: &str, messages: Vec<String>) {
        self.errors
            .entry(field.to_owned())
            .or_default()
            .extend(messages);
    }

    /// Keeps the value of a domain parse, or records its problems under `field`.
    pub fn check<T>(&mut self, field: &str, parsed: Result<T, Vec<String>>) -> Option<T> {
        parsed.map_err(|messages| self.reject(field, messages)).ok()
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// The spec of `field`, if the handler's expectation (`required`) matches it.
    fn spec_of(&mut self, field: &str, required: bool) -> Option<&'static FieldSpec> {
        match self.spec.field(field) {
            Some(spec) if spec.required == required => {
                self.read.push(spec.name);
                Some(spec)
            }
            _ => {
                self.bug = Some(format!(
                    "handler reads `{field}` (required: {required}) against body spec {}",
                    self.spec.name
                ));
                None
            }
        }
    }

    /// Like DRF without `allow_null`: `null` is refused even for an optional field (in a
    /// PATCH, "set it to null" must not silently mean "leave it alone").
    fn take(&mut self, field: &str, required: bool) -> Option<(Value, &'static FieldSpec)> {
        let spec = self.spec_of(field, required)?;
        let value = self.body.remove(field);
        if value.is_some() {
            self.present.push(spec.name);
        }
        match value {
            None if required => {
                self.reject(field, vec![REQUIRED.into()]);
                None
            }
            Some(Value::Null) => {
                self.reject(field, vec!["This field may not be null.".into()]);
                None
            }
            None => None,
            Some(value) => Some((value, spec)),
        }
    }

    fn string(&mut self, field: &str, required: bool) -> Option<String> {
        let (value, spec) = self.take(field, required)?;
        let Kind::Text(bounds) = &spec.kind else {
            self.bug = Some(format!("`{field}` is not a string in {}", self.spec.name));
            return None;
        };
        let checked = match value {
            Value::String(s) => text_problems(&s, bounds).map_or(Ok(s), Err),
            _ => Err(vec!["Not a valid string.".into()]),
        };
        self.check(field, checked)
    }

    pub fn required_str(&mut self, field: &str) -> Option<String> {
        self.string(field, true)
    }

    pub fn optional_str(&mut self, field: &str) -> Option<String> {
        self.string(field, false)
    }

    /// An optional JSON object, for a domain parser; bounded in size by its spec.
    pub fn optional_object(&mut self, field: &str) -> Option<Value> {
        let (value, spec) = self.take(field, false)?;
        let Kind::Object { max_bytes, .. } = spec.kind else {
            self.bug = Some(format!("`{field}` is not an object in {}", self.spec.name));
            return None;
        };
        let checked = match &value {
            Value::Object(_) if value.to_string().len() > max_bytes => Err(vec![format!(
                "Ensure this object is at most {max_bytes} bytes as JSON."
            )]),
            Value::Object(_) => Ok(value),
            _ => Err(vec!["Expected a JSON object.".into()]),
        };
        self.check(field, checked)
    }

    pub fn optional_bool(&mut self, field: &str) -> Option<bool> {
        match self.take(field, false)?.0 {
            Value::Bool(b) => Some(b),
            _ => {
                self.reject(field, vec!["Must be a valid boolean.".into()]);
                None
            }
        }
    }

    /// An optional list of strings, each bounded by the spec and parsed by `parse`;
    /// every bad item is recorded.
    pub fn optional_list<T>(
        &mut self,
        field: &str,
        parse: impl Fn(&str) -> Result<T, Vec<String>>,
    ) -> Option<Vec<T>> {
        let (value, spec) = self.take(field, false)?;
        let Kind::TextList {
            item: bounds,
            max_items,
        } = &spec.kind
        else {
            self.bug = Some(format!("`{field}` is not a list in {}", self.spec.name));
            return None;
        };
        let Value::Array(items) = value else {
            self.reject(field, vec!["Expected a list of items.".into()]);
            return None;
        };
        if items.len() > *max_items {
            self.reject(
                field,
                vec![format!(
                    "Ensure this field has no more than {max_items} elements."
                )],
            );
            return None;
        }
        let mut parsed = Vec::with_capacity(items.len());
        let mut problems = Vec::new();
        for item in &items {
            let item = match item.as_str() {
                Some(s) => text_problems(s, bounds).map_or_else(|| parse(s), Err),
                None => Err(vec!["Not a valid string.".into()]),
            };
            match item {
                Ok(value) => parsed.push(value),
                Err(p) => problems.extend(p),
            }
        }
        if problems.is_empty() {
            Some(parsed)
        } else {
            problems.dedup();
            self.reject(field, problems);
            None
        }
    }

    /// A required password and its required confirmation; a mismatch is recorded on the
    /// confirmation field. Returns the password as typed, for the policy to parse.
    pub fn password_pair(&mut self, field: &str, confirm_field: &str) -> Option<String> {
        let password = self.required_str(field);
        let confirm = self.required_str(confirm_field);
        if let (Some(p), Some(c)) = (&password, &confirm)
            && p != c
        {
            self.reject(
                confirm_field,
                vec!["The two password fields didn't match.".into()],
            );
        }
        password
    }

    /// The one string field of a single-field body.
    pub fn only_str(body: JsonBody, field: &str) -> Result<String, ApiError> {
        let mut f = Self::new(body);
        let value = f.required_str(field);
        f.finish(|| value)
    }

    /// The one optional text field of a body that has no other (which may be absent).
    pub fn only_optional_str(body: JsonBody, field: &str) -> Result<Option<String>, ApiError> {
        let mut f = Self::new(body);
        let value = f.optional_str(field);
        f.finish(|| Some(value))
    }

    /// An optional free-text field checked by a domain rule (`check_name`, `check_bio`):
    /// absent is `None`, a value the rule refuses is recorded.
    pub fn optional_checked(
        &mut self,
        field: &str,
        rule: fn(&str) -> Result<(), Problems>,
    ) -> Option<String> {
        let value = self.optional_str(field)?;
        self.check(field, rule(&value).map(|()| value))
    }

    /// Ends parsing: unknown fields and collected problems become one validation error;
    /// otherwise `build` assembles the request (every field it needs is present).
    pub fn finish<T>(mut self, build: impl FnOnce() -> Option<T>) -> Result<T, ApiError> {
        if let Some(unread) = self
            .spec
            .fields
            .iter()
            .find(|f| !self.read.contains(&f.name))
        {
            self.bug = Some(format!(
                "`{}` of {} is never read by its handler",
                unread.name, self.spec.name
            ));
        }
        if let Some(bug) = self.bug {
            return Err(ApiError::Internal(bug));
        }
        let unknown: Vec<String> = self.body.keys().cloned().collect();
        for field in unknown {
            self.reject(&field, vec!["This field is not allowed here.".into()]);
        }
        let one_of = self.spec.one_of;
        if !one_of.is_empty() && self.errors.is_empty() && !self.read_any(one_of) {
            let names: Vec<String> = one_of.iter().map(|n| format!("\"{n}\"")).collect();
            self.reject(
                "non_field_errors",
                vec![format!("Must include {}.", names.join(" or "))],
            );
        }
        if !self.errors.is_empty() {
            return Err(ApiError::Validation(self.errors));
        }
        build().ok_or_else(|| ApiError::Internal("validated request lacks a field".into()))
    }

    /// Whether the body had at least one of `names` (each was taken out when read).
    fn read_any(&self, names: &[&str]) -> bool {
        names.iter().any(|name| self.present.contains(name))
    }
}

/// What is wrong with `value` as a string of these bounds, or `None`. Every field refuses
/// NUL at least (see [`super::body::Refused`]).
fn text_problems(value: &str, bounds: &Text) -> Option<Vec<String>> {
    if let Some(problem) = bounds.refused.problem(value) {
        return Some(vec![problem.into()]);
    }
    let chars = value.chars().count();
    if chars > bounds.max_chars {
        return Some(vec![format!(
            "Ensure this field has no more than {} characters.",
            bounds.max_chars
        )]);
    }
    if chars < bounds.min_chars {
        return Some(vec![if chars == 0 {
            "This field may not be blank.".into()
        } else {
            format!(
                "Ensure this field has at least {} characters.",
                bounds.min_chars
            )
        }]);
    }
    None
}
