//! What each request body may hold, declared once: the route table names an operation's
//! [`BodySpec`], the body extractor hands it to [`super::fields::Fields`], which parses
//! with it (JSON type, required or not, length bounds, no NUL), and the OpenAPI document
//! states it as the operation's request schema. The schema and the parser therefore cannot
//! disagree about a field's name, type, presence or bounds; what only a domain type can
//! judge (a username's characters, a password's strength) is stated as a `pattern` or in
//! the field's description next to the same constants the domain type uses.

use serde_json::json;
use utoipa::openapi::RefOr;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::schema::{
    AdditionalProperties, AllOfBuilder, AnyOfBuilder, ArrayBuilder, ArrayItems, ObjectBuilder, Ref,
    Schema, SchemaFormat, SchemaType, Type,
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
    /// A list of at most `max_items` strings, each bounded like [`Text`].
    TextList {
        item: Text,
        max_items: usize,
    },
    /// A JSON object, at most `max_bytes` once serialized, whose keys are none of
    /// `reserved` and hold no `names` character, and whose values hold no U+0000 at any
    /// depth ([`NUL_FREE_JSON`]); all stated here, refused by the domain type that owns
    /// the rules.
    Object {
        max_bytes: usize,
        reserved: &'static [&'static str],
        names: Refused,
    },
}

/// A string field: length in characters (Unicode scalar values), the characters the
/// parser refuses, and optionally the pattern (ECMA-262, as JSON Schema states it) or
/// format the domain type accepts.
#[derive(Debug, Clone, Copy)]
pub struct Text {
    pub min_chars: usize,
    pub max_chars: usize,
    pub refused: Refused,
    /// Stated instead of [`Refused::pattern`], so it must exclude those characters too.
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
        refused: Refused::Nul,
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

    pub const fn refusing(mut self, refused: Refused) -> Self {
        self.refused = refused;
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
            .pattern(Some(
                self.pattern
                    .map_or_else(|| self.refused.pattern(), str::to_owned),
            ));
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

/// Characters a string field refuses whatever else it allows. The parser checks them
/// ([`Refused::problem`]) and the document states them as the field's pattern, from this
/// one definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// U+0000: PostgreSQL's text cannot hold it, and no name, token or password needs it.
    Nul,
    /// Every control character (Unicode's `Cc`: C0, DEL, C1), as `char::is_control`:
    /// invisible in a one-line name, and only there to confuse whoever reads it later.
    Controls,
    /// Control characters other than tab, line feed and carriage return (multi-line text).
    ControlsButLineBreaks,
}

const NUL: &str = "Null characters are not allowed.";
const CONTROL: &str = "Control characters are not allowed.";

impl Refused {
    /// The refused characters, as inclusive ranges: the one list both the check and the
    /// pattern are made from.
    const fn ranges(self) -> &'static [(char, char)] {
        match self {
            Refused::Nul => &[('\0', '\0')],
            Refused::Controls => &[('\0', '\x1F'), ('\x7F', '\u{9F}')],
            Refused::ControlsButLineBreaks => &[
                ('\0', '\x08'),
                ('\x0B', '\x0C'),
                ('\x0E', '\x1F'),
                ('\x7F', '\u{9F}'),
            ],
        }
    }

    /// The ECMA-262 pattern of the strings that hold none of these characters.
    pub fn pattern(self) -> String {
        let class: String = self
            .ranges()
            .iter()
            .map(|&(lo, hi)| {
                let (lo, hi) = (u32::from(lo), u32::from(hi));
                if lo == hi {
                    format!("\\x{lo:02X}")
                } else {
                    format!("\\x{lo:02X}-\\x{hi:02X}")
                }
            })
            .collect();
        format!("^[^{class}]*$")
    }

    pub fn refuses(self, c: char) -> bool {
        self.ranges().iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
    }

    /// DRF's message for the first refused character of `value`, if any.
    pub fn problem(self, value: &str) -> Option<&'static str> {
        let c = value.chars().find(|&c| self.refuses(c))?;
        Some(if c == '\0' { NUL } else { CONTROL })
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
    /// A body of optional fields only may be left out altogether (`POST` with no body is
    /// `{}`): the refresh cookie stands in for `refresh_token`.
    pub fn may_be_absent(&self) -> bool {
        self.one_of.is_empty() && self.fields.iter().all(|f| !f.required)
    }

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
            Kind::TextList { item, max_items } => Schema::Array(
                ArrayBuilder::new()
                    .items(ArrayItems::RefOrSchema(Box::new(RefOr::T(
                        item.schema("", ctx),
                    ))))
                    .max_items(Some(*max_items))
                    .description(Some(self.description))
                    .build(),
            ),
            Kind::Object {
                reserved, names, ..
            } => {
                // `{"not": {"enum": [...]}}`: utoipa has no `not` keyword, so it goes in
                // through the (unprefixed, flattened) extensions.
                let not: Extensions = [("not", json!({ "enum": reserved }))].into_iter().collect();
                let names = ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(names.pattern()))
                    .extensions(Some(not));
                Schema::Object(
                    ObjectBuilder::new()
                        .schema_type(Type::Object)
                        .property_names(Some(names))
                        .additional_properties(Some(AdditionalProperties::RefOr(
                            nul_free_json_ref(),
                        )))
                        .description(Some(self.description))
                        .build(),
                )
            }
        }
    }
}

/// The component of any JSON value without U+0000, in strings or keys, at any depth:
/// recursive, as only a recursive schema can say "anywhere inside".
pub const NUL_FREE_JSON: &str = "NulFreeJson";

fn nul_free_json_ref() -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(NUL_FREE_JSON))
}

/// The components the body schemas refer to, beside the bodies themselves.
pub fn components() -> Vec<(String, RefOr<Schema>)> {
    let text = || {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(Refused::Nul.pattern()))
    };
    let scalar = ObjectBuilder::new().schema_type(SchemaType::from_iter([
        Type::Number,
        Type::Boolean,
        Type::Null,
    ]));
    let list = ArrayBuilder::new().items(ArrayItems::RefOrSchema(Box::new(nul_free_json_ref())));
    let object = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(text()))
        .additional_properties(Some(AdditionalProperties::RefOr(nul_free_json_ref())));
    let any = AnyOfBuilder::new()
        .item(text())
        .item(scalar)
        .item(list)
        .item(object)
        .description(Some(
            "Any JSON value without U+0000 in a string or a key, at any depth.",
        ))
        .build();
    vec![(NUL_FREE_JSON.to_owned(), RefOr::T(Schema::AnyOf(any)))]
}

/// The bounds shared by several bodies, from the limits the domain types enforce.
pub mod bounds {

    use super::{FieldSpec, Kind, Refused, Text, required, text};
    use crate::domain::{
        EMAIL_MAX_LEN, GROUP_NAME_MAX_CHARS, NAME_MAX_CHARS, PASSWORD_MAX_CHARS, USERNAME_MAX_CHARS,
    };

    /// `Username::parse`: letters, digits (Rust's `char::is_alphanumeric`, which is
    /// Unicode's Alphabetic and Numeric properties) and `@ . + - _`, after NFKC.
    /// `\p{Alpha}` is ECMA-262's own alias of `\p{Alphabetic}` (the same set); test
    /// generators such as Schemathesis know the alias, not the long name.
    pub const USERNAME: Text = text(USERNAME_MAX_CHARS)
        .min(1)
        .pattern(r"^[\p{Alpha}\p{N}@.+_-]+$");
    pub const EMAIL: Text = text(EMAIL_MAX_LEN).min(1).format("email");
    /// An address to look up (reset, resend): any text, since the answer must not say
    /// whether it was even valid.
    pub const EMAIL_LOOKUP: Text = text(EMAIL_MAX_LEN);
    /// A login name: a username or an email address.
    pub const LOGIN_NAME: Text = text(EMAIL_MAX_LEN);
    /// A new password; its minimum length is `password.min_length`, stated in the
    /// document as configured. The pattern states `PasswordPolicy`'s "not entirely
    /// numeric" (ASCII digits, as the policy counts them) along with the refused NUL; the
    /// policy's other rules (common, similar to the username) depend on data no schema has.
    pub const NEW_PASSWORD: Text = text(PASSWORD_MAX_CHARS)
        .min(1)
        .password_policy()
        .pattern(r"^[^\x00]*[^\x000-9][^\x00]*$");
    /// A password to check: bounded like a new one, so no request hashes more.
    pub const PASSWORD: Text = text(PASSWORD_MAX_CHARS);
    pub const NAME: Text = text(NAME_MAX_CHARS).refusing(Refused::Controls);
    pub const BIO: Text = text(BIO_MAX_CHARS).refusing(Refused::ControlsButLineBreaks);
    pub const GROUP_NAME: Text = text(GROUP_NAME_MAX_CHARS)
        .min(1)
        .pattern(r"^[\p{Alpha}\p{N}_.@+:-]+$");
    /// Most groups one user can be given at once. Every group name rides in each of the
    /// user's access tokens, which must stay well inside [`JWT`]'s bound.
    pub const GROUPS_MAX_ITEMS: usize = 32;
    /// A JWT: header, claims and signature, each base64url without padding, as every
    /// token latchkey issues; anything else fails verification. The bound is the largest
    /// access token latchkey can issue, with room to spare: 4 KiB of custom claims,
    /// [`GROUPS_MAX_ITEMS`] group names of 150 four-byte characters, a 150-character
    /// username and a 254-byte email come to about 25 KB of claims, 33 KB as base64url.
    pub const JWT: Text =
        text(48 * 1024).pattern(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::extractors::BODY_LIMIT;

    #[test]
    fn refused_characters_are_what_their_names_say() {
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            assert_eq!(Refused::Nul.refuses(c), c == '\0', "{c:?}");
            assert_eq!(Refused::Controls.refuses(c), c.is_control(), "{c:?}");
            assert_eq!(
                Refused::ControlsButLineBreaks.refuses(c),
                c.is_control() && !matches!(c, '\t' | '\n' | '\r'),
                "{c:?}"
            );
        }
        assert_eq!(Refused::Nul.pattern(), r"^[^\x00]*$");
        assert_eq!(Refused::Controls.pattern(), r"^[^\x00-\x1F\x7F-\x9F]*$");
        assert_eq!(
            Refused::ControlsButLineBreaks.pattern(),
            r"^[^\x00-\x08\x0B-\x0C\x0E-\x1F\x7F-\x9F]*$"
        );
        assert_eq!(Refused::Controls.problem("tab\there"), Some(CONTROL));
        assert_eq!(Refused::Controls.problem("a\0\u{7}"), Some(NUL));
        assert_eq!(Refused::ControlsButLineBreaks.problem("a\r\n\tb"), None);
    }

    /// The most bytes one character of `text` can take in a body: 1 for a JWT (base64url),
    /// else 6 (`\u001F`, the longest a character must be written in JSON; UTF-8 is at most
    /// 4).
    fn widest_char(text: &Text) -> usize {
        if text.pattern == bounds::JWT.pattern {
            1
        } else {
            6
        }
    }

    fn text_bytes(text: &Text) -> usize {
        2 + text.max_chars * widest_char(text)
    }

    /// Every body a spec allows fits in the body limit, so a schema-valid request is never
    /// refused as too large (`413`): the limit and the bounds were chosen together.
    #[test]
    fn every_valid_body_fits_the_body_limit() {
        for route in crate::http::routes::all() {
            let Some(spec) = route.body else { continue };
            let fields: usize = spec
                .fields
                .iter()
                .map(|f| {
                    f.name.len()
                        + 4
                        + match &f.kind {
                            Kind::Text(text) => text_bytes(text),
                            Kind::Bool => 5,
                            Kind::TextList { item, max_items } => {
                                2 + max_items * (text_bytes(item) + 1)
                            }
                            Kind::Object { max_bytes, .. } => *max_bytes,
                        }
                })
                .sum();
            assert!(
                2 + fields <= BODY_LIMIT,
                "{}: up to {} bytes",
                spec.name,
                2 + fields
            );
        }
    }
}
