//! What each request body may hold, declared once: the route table names an operation's
//! [`BodySpec`], the body extractor hands it to [`super::fields::Fields`], which parses
//! with it (JSON type, required or not, length bounds, no NUL), and the OpenAPI document
//! states it as the operation's request schema. The schema and the parser therefore cannot
//! disagree about a field's name, type, presence or bounds; what only a domain type can
//! judge (a username's characters, a password's strength) is stated as a `pattern` or in
//! the field's description next to the same constants the domain type uses.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{
    AdditionalProperties, AllOfBuilder, AnyOfBuilder, ArrayBuilder, ArrayItems, ObjectBuilder,
    Schema, SchemaFormat, Type,
};

/// A JSON object body: its fields, and the groups of which at least one must be present.
#[derive(Debug)]
pub struct BodySpec {
    /// The schema's component name in the OpenAPI document.
    pub name: &'static str,
    pub description: &'static str,
    pub fields: &'static [FieldSpec],
    /// At least one field of this list must be present (login: `username` or `email`).
    pub one_of: &'static [&'static str],
}

#[derive(Debug)]
pub struct FieldSpec {
    pub name: &'static str,
    pub required: bool,
    pub kind: Kind,
    pub description: &'static str,
}

/// A field's JSON type and the bounds the parser enforces on it.
#[derive(Debug)]
pub enum Kind {
    Text(Text),
    Bool,
    /// A list of strings, each bounded like [`Text`].
    TextList(Text),
    /// A JSON object, at most this many bytes once serialized.
    Object {
        max_bytes: usize,
    },
}

/// A string field: length in characters (Unicode scalar values), and optionally the
/// pattern (ECMA-262, as JSON Schema states it) or format the domain type accepts.
#[derive(Debug, Clone, Copy)]
pub struct Text {
    pub min_chars: usize,
    pub max_chars: usize,
    pub pattern: Option<&'static str>,
    pub format: Option<&'static str>,
    /// A new password: the document states `password.min_length` as its minimum (the
    /// policy, not this parser, enforces it, with the policy's message).
    pub password_policy: bool,
}

/// Any string up to `max_chars`: tokens, current passwords, free text.
pub const fn text(max_chars: usize) -> Text {
    Text {
        min_chars: 0,
        max_chars,
        pattern: None,
        format: None,
        password_policy: false,
    }
}

impl Text {
    pub const fn min(mut self, min_chars: usize) -> Self {
        self.min_chars = min_chars;
        self
    }

    pub const fn pattern(mut self, pattern: &'static str) -> Self {
        self.pattern = Some(pattern);
        self
    }

    /// A JSON Schema `format` (`email`).
    pub const fn format(mut self, format: &'static str) -> Self {
        self.format = Some(format);
        self
    }

    pub const fn password_policy(mut self) -> Self {
        self.password_policy = true;
        self
    }

    fn schema(&self, description: &str, ctx: &SchemaContext) -> Schema {
        let min = if self.password_policy {
            ctx.password_min_length
        } else {
            self.min_chars
        };
        let mut schema = ObjectBuilder::new()
            .schema_type(Type::String)
            .max_length(Some(self.max_chars))
            .pattern(self.pattern);
        if min > 0 {
            schema = schema.min_length(Some(min));
        }
        if let Some(format) = self.format {
            schema = schema.format(Some(SchemaFormat::Custom(format.to_owned())));
        }
        if !description.is_empty() {
            schema = schema.description(Some(description));
        }
        Schema::Object(schema.build())
    }
}

/// What the document states from the configuration rather than from the code.
pub struct SchemaContext {
    pub password_min_length: usize,
}

/// A required field.
pub const fn required(name: &'static str, kind: Kind, description: &'static str) -> FieldSpec {
    FieldSpec {
        name,
        required: true,
        kind,
        description,
    }
}

/// An optional field: absent means "not given" (`null` is refused).
pub const fn optional(name: &'static str, kind: Kind, description: &'static str) -> FieldSpec {
    FieldSpec {
        name,
        required: false,
        kind,
        description,
    }
}

impl BodySpec {
    pub fn field(&self, name: &str) -> Option<&FieldSpec> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The JSON Schema of the body: a closed object (unknown fields are refused).
    pub fn schema(&self, ctx: &SchemaContext) -> Schema {
        let mut object = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(self.description))
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        for field in self.fields {
            object = object.property(field.name, field.schema(ctx));
            if field.required {
                object = object.required(field.name);
            }
        }
        let object = object.build();
        if self.one_of.is_empty() {
            return Schema::Object(object);
        }
        // "At least one of": `anyOf` one-field `required` lists, beside the object.
        let any = self.one_of.iter().fold(AnyOfBuilder::new(), |any, name| {
            any.item(
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .required(*name),
            )
        });
        Schema::AllOf(AllOfBuilder::new().item(object).item(any).build())
    }
}

impl FieldSpec {
    fn schema(&self, ctx: &SchemaContext) -> Schema {
        match &self.kind {
            Kind::Text(text) => text.schema(self.description, ctx),
            Kind::Bool => Schema::Object(
                ObjectBuilder::new()
                    .schema_type(Type::Boolean)
                    .description(Some(self.description))
                    .build(),
            ),
            Kind::TextList(text) => Schema::Array(
                ArrayBuilder::new()
                    .items(ArrayItems::RefOrSchema(Box::new(RefOr::T(
                        text.schema("", ctx),
                    ))))
                    .description(Some(self.description))
                    .build(),
            ),
            Kind::Object { .. } => Schema::Object(
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .description(Some(self.description))
                    .build(),
            ),
        }
    }
}

/// The bounds shared by several bodies, from the limits the domain types enforce.
pub mod bounds {

    use super::{FieldSpec, Kind, Text, required, text};
    use crate::domain::{
        EMAIL_MAX_LEN, GROUP_NAME_MAX_CHARS, NAME_MAX_CHARS, PASSWORD_MAX_CHARS, USERNAME_MAX_CHARS,
    };

    /// `Username::parse`: letters, digits (Rust's `char::is_alphanumeric`, which is
    /// Unicode's Alphabetic and Numeric properties) and `@ . + - _`, after NFKC.
    pub const USERNAME: Text = text(USERNAME_MAX_CHARS)
        .min(1)
        .pattern(r"^[\p{Alphabetic}\p{N}@.+_-]+$");
    pub const EMAIL: Text = text(EMAIL_MAX_LEN).min(1).format("email");
    /// An address to look up (reset, resend): any text, since the answer must not say
    /// whether it was even valid.
    pub const EMAIL_LOOKUP: Text = text(EMAIL_MAX_LEN);
    /// A login name: a username or an email address.
    pub const LOGIN_NAME: Text = text(EMAIL_MAX_LEN);
    /// A new password; its minimum length is `password.min_length`, stated in the
    /// document as configured.
    pub const NEW_PASSWORD: Text = text(PASSWORD_MAX_CHARS).min(1).password_policy();
    /// A password to check: bounded like a new one, so no request hashes more.
    pub const PASSWORD: Text = text(PASSWORD_MAX_CHARS);
    pub const NAME: Text = text(NAME_MAX_CHARS);
    pub const BIO: Text = text(BIO_MAX_CHARS);
    pub const GROUP_NAME: Text = text(GROUP_NAME_MAX_CHARS)
        .min(1)
        .pattern(r"^[\p{Alphabetic}\p{N}_.@+:-]+$");
    /// A JWT: header, claims (custom claims up to 4 KiB) and signature, base64url.
    pub const JWT: Text = text(16 * 1024);
    /// The `uid` of an emailed link: base64url of a hyphenated UUID (48 characters).
    pub const UID: Text = text(64);
    /// The `token` of an emailed link: a timestamp and a base64url HMAC.
    pub const LINK_TOKEN: Text = text(128);

    /// The pair of fields that sets a new password (reset, change).
    pub const NEW_PASSWORD_FIELD: FieldSpec = required(
        "new_password",
        Kind::Text(NEW_PASSWORD),
        "The same rules as at registration.",
    );
    pub const NEW_PASSWORD_CONFIRM_FIELD: FieldSpec = required(
        "new_password_confirm",
        Kind::Text(PASSWORD),
        "Must equal `new_password`.",
    );

    /// Longest `bio`: a paragraph, not a document.
    pub const BIO_MAX_CHARS: usize = 2000;
}
