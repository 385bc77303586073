//! The embedded browser assets: compiled into the binary, so the service needs no files
//! beside it and serves exactly the version it was built with. They only call the public
//! JSON API.

/// The browser client (`GET /sdk/latchkey.js`): an ES module with no dependencies, also
/// in the repository for vendoring (`src/console/assets/latchkey.js`).
pub const SDK: &str = include_str!("assets/latchkey.js");
