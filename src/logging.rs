//! Logs to stderr through env_logger (`RUST_LOG`, default `info`); with
//! `LATCHKEY_LOG_FORMAT=json`, one JSON object per line for log shippers.

use std::io::Write;

pub fn init() {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if std::env::var("LATCHKEY_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        builder.format(|buf, record| {
            let line = serde_json::json!({
                "ts": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "level": record.level().as_str(),
                "target": record.target(),
                "msg": record.args().to_string(),
            });
            writeln!(buf, "{line}")
        });
    }
    // A second init (tests, embedding) keeps the first logger.
    let _ = builder.try_init();
}
