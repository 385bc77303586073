//! Logs to stderr through env_logger (`RUST_LOG`, default `info`); with
//! `LATCHKEY_LOG_FORMAT=json`, one JSON object per line for log shippers, carrying a
//! record's structured fields (the access log's method, route, status…) as members.

use std::io::Write;

use log::kv::{Error, Key, Value, VisitSource};
use serde_json::{Map, Value as Json};

/// Copies a record's key-values into a JSON object, numbers and booleans as such.
struct Fields<'a>(&'a mut Map<String, Json>);

impl<'kvs> VisitSource<'kvs> for Fields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), Error> {
        let json = if let Some(n) = value.to_u64() {
            Json::from(n)
        } else if let Some(n) = value.to_i64() {
            Json::from(n)
        } else if let Some(x) = value.to_f64() {
            Json::from(x)
        } else if let Some(b) = value.to_bool() {
            Json::from(b)
        } else {
            Json::from(value.to_string())
        };
        self.0.insert(key.as_str().to_owned(), json);
        Ok(())
    }
}

pub fn init() {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if std::env::var("LATCHKEY_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        builder.format(|buf, record| {
            let mut line = Map::new();
            // Structured fields first, so the fixed members below always win a name clash.
            let _ = record.key_values().visit(&mut Fields(&mut line));
            let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
            line.insert("ts".into(), Json::from(ts));
            line.insert("level".into(), Json::from(record.level().as_str()));
            line.insert("target".into(), Json::from(record.target()));
            line.insert("msg".into(), Json::from(record.args().to_string()));
            writeln!(buf, "{}", Json::Object(line))
        });
    }
    // A second init (tests, embedding) keeps the first logger.
    let _ = builder.try_init();
}
