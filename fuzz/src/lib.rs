//! What the fuzz targets share. A target is a file in `fuzz_targets/` that calls
//! `libfuzzer_sys::fuzz_target!`; anything two targets need goes here.

use std::sync::LazyLock;
use std::time::Duration;

use latchkey::auth::jwt::TokenService;
use latchkey::auth::keys::KeySet;
use latchkey::config::JwtSettings;
use latchkey::db::DatabaseUrl;

/// The issuer and audience the shared token service checks.
pub const ISSUER: &str = "https://id.example";
pub const AUDIENCE: &str = "latchkey";

/// A token service as the server builds one, over an ES256 key generated for this run
/// (`KeySet::load` creates the development key beside a SQLite path), with no leeway.
pub static TOKENS: LazyLock<TokenService> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("a temporary directory for the key");
    let settings = JwtSettings {
        audience: AUDIENCE.into(),
        leeway: Duration::ZERO,
        ..JwtSettings::default()
    };
    let keys = KeySet::load(&settings, &DatabaseUrl::Sqlite(dir.path().join("fuzz.db")))
        .expect("a generated ES256 key");
    // The key is in memory now; the directory may go.
    drop(dir);
    TokenService::new(keys, ISSUER.into(), &settings)
});
