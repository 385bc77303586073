//! The human-readable API reference: one self-contained HTML page (inline CSS, no scripts,
//! nothing fetched) rendered from the OpenAPI document itself, so the two cannot disagree.
//! Every piece of text from the document is escaped; the only markup taken from it is
//! the `code` and `**strong**` spans of its CommonMark descriptions. (Writing to a `String`
//! cannot fail, hence the `let _ = write!(...)`s.)

use std::fmt::Write;

use serde::Serialize;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::schema::{AdditionalProperties, ArrayItems, Object, Schema, SchemaType};
use utoipa::openapi::{Content, OpenApi, RefOr, Required, Response};

use super::requires_bearer;

const STYLE: &str = "
body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1d232a;background:#fafafa}
header,main,nav{max-width:60rem;margin:0 auto;padding:0 1.25rem}
header{padding-top:1.5rem}
h1 small{font-weight:normal;color:#5b6570;font-size:60%}
h2{border-bottom:2px solid #d5dbe1;padding-bottom:.25rem;margin-top:2.5rem}
article{background:#fff;border:1px solid #d5dbe1;border-radius:6px;padding:.25rem 1rem 1rem;margin:1rem 0}
article h3 code{font-size:105%}
code{font-family:ui-monospace,monospace;background:#eef1f4;padding:0 .2em;border-radius:3px}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{border:1px solid #d5dbe1;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#eef1f4;font-weight:600}
td p{margin:0 0 .4rem}
.method{display:inline-block;min-width:4.5rem;text-align:center;border-radius:4px;color:#fff;font-size:80%;font-weight:700;padding:.1rem .4rem;margin-right:.4rem}
.get{background:#2f7d32}.post{background:#1f5fa8}.patch{background:#a86a00}.delete{background:#b3261e}.put{background:#6a3fa0}
.note{color:#5b6570}
nav ul{columns:2;padding-left:1.2rem}
a{color:#1f5fa8}
";

/// The reference page for `doc`.
pub fn render(doc: &OpenApi) -> String {
    let mut page = String::with_capacity(64 * 1024);
    let info = &doc.info;
    let title = esc(&info.title);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} API reference</title><style>{STYLE}</style></head><body>\
         <header><h1>{title} <small>API reference, version {}</small></h1><p>",
        esc(&info.version)
    );
    page.push_str(
        // Relative, so the link survives a reverse proxy that mounts the service elsewhere.
        "The machine-readable form of this page: <a href=\"openapi.json\">\
         <code>/openapi.json</code></a> (OpenAPI 3.1).",
    );
    for server in doc.servers.iter().flatten() {
        let _ = write!(page, " Server: <code>{}</code>.", esc(&server.url));
    }
    if let Some(license) = &info.license {
        let _ = write!(page, " License: {}.", esc(&license.name));
    }
    page.push_str("</p>");
    if let Some(description) = &info.description {
        page.push_str(&prose(description));
    }
    page.push_str("</header>");

    let operations: Vec<(&str, &str, &Operation)> = doc
        .paths
        .paths
        .iter()
        .flat_map(|(path, item)| {
            operations(item).map(move |(method, op)| (path.as_str(), method, op))
        })
        .collect();
    let tags: Vec<(&str, Option<&str>)> = doc
        .tags
        .iter()
        .flatten()
        .map(|t| (t.name.as_str(), t.description.as_deref()))
        .collect();

    page.push_str("<nav><h2>Operations</h2><ul>");
    for (path, method, op) in &operations {
        let _ = write!(
            page,
            "<li><a href=\"#{}\">{} <code>{}</code></a> {}</li>",
            anchor(path, method),
            method.to_ascii_uppercase(),
            esc(path),
            op.summary.as_deref().map(esc).unwrap_or_default()
        );
    }
    page.push_str("</ul></nav><main>");

    for (tag, description) in &tags {
        let _ = write!(page, "<section><h2>{}</h2>", esc(tag));
        if let Some(description) = description {
            page.push_str(&prose(description));
        }
        for (path, method, op) in operations.iter().filter(|(_, _, op)| first_tag(op) == *tag) {
            operation(&mut page, doc, path, method, op);
        }
        page.push_str("</section>");
    }
    let untagged: Vec<_> = operations
        .iter()
        .filter(|(_, _, op)| !tags.iter().any(|(tag, _)| first_tag(op) == *tag))
        .collect();
    if !untagged.is_empty() {
        page.push_str("<section><h2>Other operations</h2>");
        for (path, method, op) in untagged {
            operation(&mut page, doc, path, method, op);
        }
        page.push_str("</section>");
    }

    page.push_str("<section><h2>Schemas</h2>");
    for (name, schema) in doc.components.iter().flat_map(|c| &c.schemas) {
        let _ = write!(
            page,
            "<article id=\"schema-{}\"><h3>{}</h3>",
            ident(name),
            esc(name)
        );
        schema_body(&mut page, schema);
        page.push_str("</article>");
    }
    page.push_str("</section></main></body></html>\n");
    page
}

/// The operations of a path with their methods, in the order the document lists them.
fn operations(item: &PathItem) -> impl Iterator<Item = (&'static str, &Operation)> {
    [
        ("get", &item.get),
        ("put", &item.put),
        ("post", &item.post),
        ("delete", &item.delete),
        ("options", &item.options),
        ("head", &item.head),
        ("patch", &item.patch),
        ("trace", &item.trace),
    ]
    .into_iter()
    .filter_map(|(method, op)| op.as_ref().map(|op| (method, op)))
}

fn first_tag(op: &Operation) -> &str {
    op.tags
        .as_ref()
        .and_then(|tags| tags.first())
        .map_or("", String::as_str)
}

fn operation(page: &mut String, doc: &OpenApi, path: &str, method: &str, op: &Operation) {
    let _ = write!(
        page,
        "<article id=\"{}\"><h3><span class=\"method {method}\">{}</span><code>{}</code></h3>",
        anchor(path, method),
        method.to_ascii_uppercase(),
        esc(path)
    );
    if let Some(summary) = &op.summary {
        let _ = write!(page, "<p><strong>{}</strong></p>", esc(summary));
    }
    if let Some(description) = &op.description {
        page.push_str(&prose(description));
    }
    page.push_str(if requires_bearer(op) {
        "<p class=\"note\">Authentication: <code>Authorization: Bearer &lt;access token&gt;</code>.</p>"
    } else {
        "<p class=\"note\">Authentication: none.</p>"
    });

    let parameters: Vec<_> = op
        .parameters
        .iter()
        .flatten()
        .filter_map(|p| match p {
            RefOr::T(p) => Some(p),
            RefOr::Ref(_) => None,
        })
        .collect();
    if !parameters.is_empty() {
        page.push_str(
            "<h4>Parameters</h4><table><tr><th>Name</th><th>In</th><th>Type</th>\
             <th>Required</th><th>Description</th></tr>",
        );
        for p in parameters {
            let _ = write!(
                page,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&p.name),
                esc(&wire(&p.parameter_in)),
                p.schema.as_ref().map_or_else(String::new, type_label),
                yes_no(matches!(p.required, Required::True)),
                p.description.as_deref().map(prose).unwrap_or_default()
                    + &p.schema.as_ref().map(constraints).unwrap_or_default()
            );
        }
        page.push_str("</table>");
    }

    if let Some(RefOr::T(body)) = &op.request_body {
        page.push_str("<h4>Request body</h4>");
        if let Some(description) = &body.description {
            page.push_str(&prose(description));
        }
        for (content_type, content) in &body.content {
            let _ = write!(page, "<p><code>{}</code>", esc(content_type));
            if let RefOr::T(Content {
                schema: Some(schema),
                ..
            }) = content
            {
                let _ = write!(page, ": {}</p>", type_label(schema));
                // The fields right here: the body is what a reader of an operation needs.
                if let Some(object) = resolve(doc, schema) {
                    fields(page, object);
                }
            } else {
                page.push_str("</p>");
            }
        }
    }

    page.push_str(
        "<h4>Responses</h4><table><tr><th>Status</th><th>Description</th><th>Body</th></tr>",
    );
    for (status, response) in &op.responses.responses {
        if let RefOr::T(response) = response {
            let _ = write!(
                page,
                "<tr><td><strong>{}</strong></td><td>{}{}</td><td>{}</td></tr>",
                esc(status),
                prose(&response.description),
                response_headers(response),
                response_bodies(response)
            );
        }
    }
    page.push_str("</table></article>");
}

fn response_headers(response: &Response) -> String {
    response
        .headers
        .iter()
        .map(|(name, header)| {
            let about = match header {
                RefOr::T(h) => h.description.as_deref().unwrap_or_default(),
                RefOr::Ref(_) => "",
            };
            prose(&format!("Header `{name}`: {about}"))
        })
        .collect()
}

fn response_bodies(response: &Response) -> String {
    if response.content.is_empty() {
        return "none".into();
    }
    response
        .content
        .iter()
        .map(|(content_type, content)| {
            let schema = match content {
                RefOr::T(Content {
                    schema: Some(schema),
                    ..
                }) => format!(": {}", type_label(schema)),
                _ => String::new(),
            };
            format!("<p><code>{}</code>{schema}</p>", esc(content_type))
        })
        .collect()
}

/// A component's description and fields, or what it is if it is not an object.
fn schema_body(page: &mut String, schema: &RefOr<Schema>) {
    let description = match schema {
        RefOr::T(Schema::Object(o)) => o.description.as_deref(),
        RefOr::T(Schema::Array(a)) => a.description.as_deref(),
        RefOr::T(Schema::OneOf(o)) => o.description.as_deref(),
        RefOr::T(Schema::AllOf(a)) => a.description.as_deref(),
        RefOr::T(Schema::AnyOf(a)) => a.description.as_deref(),
        _ => None,
    };
    if let Some(description) = description {
        page.push_str(&prose(description));
    }
    match schema {
        RefOr::T(Schema::Object(o)) if !o.properties.is_empty() => fields(page, o),
        _ => {
            let _ = write!(page, "<p>{}</p>", type_label(schema));
        }
    }
}

/// The property table of an object.
fn fields(page: &mut String, object: &Object) {
    if object.properties.is_empty() {
        page.push_str("<p>No fields: <code>{}</code>.</p>");
        return;
    }
    page.push_str(
        "<table><tr><th>Field</th><th>Type</th><th>Required</th><th>Description</th></tr>",
    );
    for (name, property) in &object.properties {
        let _ = write!(
            page,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}{}</td></tr>",
            esc(name),
            type_label(property),
            yes_no(object.required.contains(name)),
            property_description(property)
                .map(prose)
                .unwrap_or_default(),
            constraints(property)
        );
    }
    page.push_str("</table>");
}

fn property_description(property: &RefOr<Schema>) -> Option<&str> {
    match property {
        RefOr::T(Schema::Object(o)) => o.description.as_deref(),
        RefOr::T(Schema::Array(a)) => a.description.as_deref(),
        RefOr::T(Schema::OneOf(o)) => o.description.as_deref(),
        RefOr::Ref(r) if !r.description.is_empty() => Some(&r.description),
        _ => None,
    }
}

/// Length and range limits, default and example of a property, as one line.
fn constraints(property: &RefOr<Schema>) -> String {
    let RefOr::T(Schema::Object(o)) = property else {
        return String::new();
    };
    let mut parts = Vec::new();
    if let Some(n) = o.min_length {
        parts.push(format!("at least {n} {}", characters(n)));
    }
    if let Some(n) = o.max_length {
        parts.push(format!("at most {n} {}", characters(n)));
    }
    // Bounds of unsigned integers come out as floats (`0.0`); whole numbers read better.
    let number = |n| esc(wire(n).trim_end_matches(".0"));
    if let Some(n) = &o.minimum {
        parts.push(format!("minimum {}", number(n)));
    }
    if let Some(n) = &o.maximum {
        parts.push(format!("maximum {}", number(n)));
    }
    if let Some(value) = &o.default {
        parts.push(format!("default <code>{}</code>", esc(&value.to_string())));
    }
    if let Some(value) = &o.example {
        parts.push(format!("example <code>{}</code>", esc(&value.to_string())));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("<p class=\"note\">{}</p>", parts.join("; "))
    }
}

/// The object a schema is or refers to (among the document's own components).
fn resolve<'a>(doc: &'a OpenApi, schema: &'a RefOr<Schema>) -> Option<&'a Object> {
    let schema = match schema {
        RefOr::Ref(r) => {
            let name = r.ref_location.strip_prefix("#/components/schemas/")?;
            doc.components.as_ref()?.schemas.get(name)?
        }
        inline => inline,
    };
    match schema {
        RefOr::T(Schema::Object(o)) => Some(o),
        _ => None,
    }
}

/// A short, linked description of a schema's type, as HTML.
fn type_label(schema: &RefOr<Schema>) -> String {
    match schema {
        RefOr::Ref(r) => {
            let name = r.ref_location.rsplit('/').next().unwrap_or_default();
            format!("<a href=\"#schema-{}\">{}</a>", ident(name), esc(name))
        }
        RefOr::T(Schema::Object(o)) => object_label(o),
        RefOr::T(Schema::Array(a)) => match &a.items {
            ArrayItems::RefOrSchema(item) => format!("array of {}", type_label(item)),
            ArrayItems::False => "empty array".into(),
        },
        RefOr::T(Schema::OneOf(o)) => alternatives(&o.items, " or "),
        RefOr::T(Schema::AnyOf(a)) => alternatives(&a.items, " or "),
        RefOr::T(Schema::AllOf(a)) => alternatives(&a.items, " and "),
        RefOr::T(_) => "any".into(),
    }
}

fn alternatives(items: &[RefOr<Schema>], joiner: &str) -> String {
    items
        .iter()
        .map(type_label)
        .collect::<Vec<_>>()
        .join(joiner)
}

fn object_label(o: &Object) -> String {
    let mut label = match &o.schema_type {
        SchemaType::Type(t) => wire(t),
        SchemaType::Array(types) => types.iter().map(wire).collect::<Vec<_>>().join(" or "),
        SchemaType::AnyValue => "any".into(),
    };
    label = esc(&label);
    if let Some(values) = &o.additional_properties {
        match values.as_ref() {
            AdditionalProperties::RefOr(values) => {
                label = format!("map of string to {}", type_label(values));
            }
            AdditionalProperties::FreeForm(true) if o.properties.is_empty() => {
                label = "object (any fields)".into();
            }
            AdditionalProperties::FreeForm(_) => {}
        }
    }
    if let Some(format) = &o.format {
        let _ = write!(label, " ({})", esc(&wire(format)));
    }
    if let Some(values) = &o.enum_values {
        let values: Vec<String> = values
            .iter()
            .map(|v| format!("<code>{}</code>", esc(&v.to_string())))
            .collect();
        let _ = write!(label, ": one of {}", values.join(", "));
    }
    label
}

/// How a value is spelled in the document (`string`, `date-time`, `query`...).
fn wire<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

fn characters(n: usize) -> &'static str {
    if n == 1 { "character" } else { "characters" }
}

fn yes_no(yes: bool) -> &'static str {
    if yes { "yes" } else { "no" }
}

/// The id of an operation's article.
fn anchor(path: &str, method: &str) -> String {
    format!("{method}-{}", ident(path.trim_start_matches('/')))
}

/// `s` reduced to characters that are safe in an id and a URL fragment.
fn ident(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Text for an HTML text node or attribute value.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// CommonMark-ish prose: paragraphs at blank lines, `code` and **strong** spans; all
/// other characters escaped. An unclosed span runs to the end of its paragraph.
fn prose(text: &str) -> String {
    let mut html = String::new();
    for paragraph in text.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
        html.push_str("<p>");
        let mut rest = paragraph;
        let (mut code, mut strong) = (false, false);
        while let Some(c) = rest.chars().next() {
            if c == '`' {
                html.push_str(if code { "</code>" } else { "<code>" });
                code = !code;
                rest = &rest[1..];
            } else if !code && rest.starts_with("**") {
                html.push_str(if strong { "</strong>" } else { "<strong>" });
                strong = !strong;
                rest = &rest[2..];
            } else {
                html.push_str(&esc(&rest[..c.len_utf8()]));
                rest = &rest[c.len_utf8()..];
            }
        }
        if code {
            html.push_str("</code>");
        }
        if strong {
            html.push_str("</strong>");
        }
        html.push_str("</p>");
    }
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prose_escapes_everything_but_its_own_spans() {
        assert_eq!(
            prose("a <b> & `x<y>` **bold**\n\nnext `open"),
            "<p>a &lt;b&gt; &amp; <code>x&lt;y&gt;</code> <strong>bold</strong></p>\
             <p>next <code>open</code></p>"
        );
        assert_eq!(esc("\"'"), "&quot;&#39;");
    }

    #[test]
    fn anchors_are_plain() {
        assert_eq!(anchor("/users/{id}", "get"), "get-users--id-");
        assert_eq!(ident("Page_User"), "Page_User");
    }
}
