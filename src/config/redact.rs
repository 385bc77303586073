//! Redaction of secret settings for `check-config` and for anything else that prints them.
//!
//! A database URL carries its password in the userinfo (`postgres://u:pw@h/db`) or in the
//! query (`?password=pw`, `?sslpassword=pw`, percent-encoded keys, …). Rather than list
//! the secret parts, [`url`] shows only the parts it recognises as harmless and masks the
//! rest; a URL it cannot take apart unambiguously is masked whole after its scheme.

use std::borrow::Cow;

pub const MASK: &str = "********";

/// libpq connection parameters that hold no secret; the value of any other query
/// parameter is masked (`password`, `sslpassword`, misspellings, future keywords).
const PUBLIC_PARAMS: &[&str] = &[
    "application_name",
    "channel_binding",
    "client_encoding",
    "connect_timeout",
    "dbname",
    "fallback_application_name",
    "gssencmode",
    "host",
    "hostaddr",
    "keepalives",
    "keepalives_count",
    "keepalives_idle",
    "keepalives_interval",
    "load_balance_hosts",
    "options",
    "port",
    "require_auth",
    "sslcert",
    "sslkey",
    "sslmode",
    "sslrootcert",
    "target_session_attrs",
    "tcp_user_timeout",
    "user",
];

/// `value` with every part that may be secret masked: the password of the userinfo, and
/// the value of every query parameter not in [`PUBLIC_PARAMS`]. Text without `://` is
/// masked whole.
pub fn url(value: &str) -> String {
    let Some((scheme, rest)) = value.split_once("://") else {
        return MASK.to_owned();
    };
    parts(rest).map_or_else(
        || format!("{scheme}://{MASK}"),
        |shown| format!("{scheme}://{shown}"),
    )
}

/// The URL after `scheme://`, redacted; `None` when its shape is ambiguous (an `@`
/// outside the authority, or more than one): a password holding an unencoded `?`, `/` or
/// `@` must not be mistaken for a host or a parameter and shown.
fn parts(rest: &str) -> Option<String> {
    let (main, query) = match rest.split_once('?') {
        Some((main, query)) => (main, Some(query)),
        None => (rest, None),
    };
    let (authority, path) = main.split_at(main.find('/').unwrap_or(main.len()));
    if rest.matches('@').count() > authority.matches('@').count()
        || authority.matches('@').count() > 1
    {
        return None;
    }
    let mut shown = String::new();
    let host = match authority.split_once('@') {
        Some((userinfo, host)) => {
            match userinfo.split_once(':') {
                Some((user, _password)) => shown.push_str(&format!("{user}:{MASK}@")),
                None => shown.push_str(&format!("{userinfo}@")),
            }
            host
        }
        None => authority,
    };
    shown.push_str(host);
    shown.push_str(path);
    if let Some(query) = query {
        let params: Vec<String> = query.split('&').map(param).collect();
        shown.push('?');
        shown.push_str(&params.join("&"));
    }
    Some(shown)
}

/// `key=value`, the value masked unless the (percent-decoded) key is public.
fn param(pair: &str) -> String {
    match pair.split_once('=') {
        Some((key, value)) if PUBLIC_PARAMS.contains(&percent_decode(key).as_ref()) => {
            format!("{key}={value}")
        }
        Some((key, _)) => format!("{key}={MASK}"),
        None => MASK.to_owned(),
    }
}

/// libpq decodes `%XX` in parameter names too, so `pass%77ord` is `password`.
fn percent_decode(text: &str) -> Cow<'_, str> {
    if !text.contains('%') {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// A plain (non-secret) setting that may still be a URL with a password in its userinfo
/// (`redis://:pw@cache`, `https://u:pw@host`): that password is masked, nothing else.
pub fn userinfo(value: &str) -> Cow<'_, str> {
    let Some((scheme, rest)) = value.split_once("://") else {
        return Cow::Borrowed(value);
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rsplit_once('@') {
        Some((userinfo, _)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            let host_and_more = &rest[userinfo.len()..];
            Cow::Owned(format!("{scheme}://{user}:{MASK}{host_and_more}"))
        }
        _ => Cow::Borrowed(value),
    }
}

/// Masks [`userinfo`] passwords in every string of a serialized settings tree.
pub fn json_tree(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(text) => {
            if let Cow::Owned(masked) = userinfo(text) {
                *text = masked;
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(json_tree),
        serde_json::Value::Object(map) => map.values_mut().for_each(json_tree),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_keep_only_their_harmless_parts() {
        for (url_text, shown) in [
            ("sqlite://latchkey.db", "sqlite://latchkey.db"),
            ("sqlite:///data/l.db", "sqlite:///data/l.db"),
            (
                "postgres://app:hunter2@db:5432/latchkey?sslmode=require",
                "postgres://app:********@db:5432/latchkey?sslmode=require",
            ),
            ("postgres://app@db/x", "postgres://app@db/x"),
            (
                "postgres://u@h/db?password=hunter2&sslmode=disable",
                "postgres://u@h/db?password=********&sslmode=disable",
            ),
            (
                "postgresql://h/db?pass%77ord=hunter2",
                "postgresql://h/db?pass%77ord=********",
            ),
            (
                "postgres://h/db?sslpassword=hunter2&PASSWORD=hunter2",
                "postgres://h/db?sslpassword=********&PASSWORD=********",
            ),
            ("postgres://h?hunter2", "postgres://h?********"),
            // Unencoded `?`, `/` or `@` in a password: nothing after the scheme is shown.
            ("postgres://u:hun?ter2@h/db", "postgres://********"),
            ("postgres://u:hun/ter2@h/db", "postgres://********"),
            ("postgres://u:hun@ter2@h/db", "postgres://********"),
            (
                "postgres://h/db?options=x@y&password=hunter2",
                "postgres://********",
            ),
            ("hunter2", "********"),
        ] {
            assert_eq!(url(url_text), shown, "{url_text}");
        }
    }

    #[test]
    fn plain_settings_lose_only_userinfo_passwords() {
        assert_eq!(
            userinfo("redis://:hunter2@cache:6379/0"),
            "redis://:********@cache:6379/0"
        );
        assert_eq!(
            userinfo("https://u:hunter2@id.example/a?b=c"),
            "https://u:********@id.example/a?b=c"
        );
        for plain in [
            "http://127.0.0.1:8000",
            "{public_url}/password/reset/{uid}/{token}",
            "https://app.example/reset?uid={uid}&token={token}",
            "latchkey <no-reply@localhost>",
            "mailto:a@b",
        ] {
            assert_eq!(userinfo(plain), plain);
        }
    }
}
