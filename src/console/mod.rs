//! The web console and the browser client, embedded in the binary: the service needs no
//! files beside it and serves exactly the version it was built with. The pages only call
//! the public JSON API, through the browser client.
//!
//! Static files are served under a versioned directory (`/console/static/<version>/…`,
//! the version a hash of every file), so browsers may cache them for good and still see
//! an upgrade at once: the pages, which are never cached, name the new directory.

use aws_lc_rs::digest::{SHA256, digest};

/// The browser client (`GET /sdk/latchkey.js`, and `latchkey.js` beside the console's
/// own modules): an ES module with no dependencies, in the repository for vendoring.
pub const SDK: &str = include_str!("assets/latchkey.js");

/// The files of `assets/console/` by name, compiled in: `include_bytes!` makes cargo
/// rebuild when one changes, and a listed file that is missing fails the build. (A test
/// checks that every file of the directory is listed.)
macro_rules! files {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_bytes!(concat!("assets/console/", $name)))),*]
    };
}

static FILES: &[(&str, &[u8])] = files![
    "activate.html",
    "activate.js",
    "admin.html",
    "admin.js",
    "common.js",
    "confirm-email.html",
    "confirm-email.js",
    "console.css",
    "console.html",
    "console.js",
    "reset.html",
    "reset.js",
];

/// Where the pages name their static directory; replaced by its versioned path.
const STATIC_PLACEHOLDER: &str = "{{static}}";

/// The URL path under which the static files are served.
pub const STATIC_PREFIX: &str = "/console/static";

/// A page of the console, by the paths that show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// `/console`: sign in, sign up, the account.
    Console,
    /// `/console/admin`: users and groups, for staff.
    Admin,
    /// `/activate/{uid}/{token}`: the activation link of the email.
    Activate,
    /// `/password/reset/{uid}/{token}`: the reset link of the email.
    PasswordReset,
    /// `/email/confirm/{uid}/{token}`: the link of an email change.
    EmailConfirm,
}

impl Page {
    pub const ALL: [Page; 5] = [
        Page::Console,
        Page::Admin,
        Page::Activate,
        Page::PasswordReset,
        Page::EmailConfirm,
    ];

    /// The page's HTML, compiled in (a missing page fails the build, not a request).
    fn source(self) -> &'static str {
        match self {
            Page::Console => include_str!("assets/console/console.html"),
            Page::Admin => include_str!("assets/console/admin.html"),
            Page::Activate => include_str!("assets/console/activate.html"),
            Page::PasswordReset => include_str!("assets/console/reset.html"),
            Page::EmailConfirm => include_str!("assets/console/confirm-email.html"),
        }
    }

    /// The route template that shows it.
    pub fn path(self) -> &'static str {
        match self {
            Page::Console => "/console",
            Page::Admin => "/console/admin",
            Page::Activate => "/activate/{uid}/{token}",
            Page::PasswordReset => "/password/reset/{uid}/{token}",
            Page::EmailConfirm => "/email/confirm/{uid}/{token}",
        }
    }

    /// Whether the URL carries a bearer secret (an emailed token), which must not leak in
    /// a `Referer`.
    pub fn carries_token(self) -> bool {
        matches!(
            self,
            Page::Activate | Page::PasswordReset | Page::EmailConfirm
        )
    }
}

/// The pages, rendered once, and the version of the static files.
pub struct Console {
    version: String,
    pages: Vec<(Page, String)>,
}

impl Default for Console {
    fn default() -> Self {
        Self::new()
    }
}

impl Console {
    pub fn new() -> Self {
        let mut files: Vec<(&str, &[u8])> = FILES.to_vec();
        files.push(("latchkey.js", SDK.as_bytes()));
        files.sort_unstable();
        let mut input = Vec::new();
        for (name, contents) in files {
            // Length-prefixed, so no two different sets of files hash the same input.
            for part in [name.as_bytes(), contents] {
                input.extend_from_slice(&(part.len() as u64).to_le_bytes());
                input.extend_from_slice(part);
            }
        }
        let version: String = digest(&SHA256, &input).as_ref()[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let base = format!("{STATIC_PREFIX}/{version}");
        let pages = Page::ALL
            .into_iter()
            .map(|page| (page, page.source().replace(STATIC_PLACEHOLDER, &base)))
            .collect();
        Self { version, pages }
    }

    /// The page's HTML, with its static directory filled in.
    pub fn page(&self, page: Page) -> &str {
        self.pages
            .iter()
            .find(|(p, _)| *p == page)
            .map_or("", |(_, html)| html.as_str())
    }

    /// A static file of this version, with its content type. Another version is not
    /// found: a page that old asks for files this build does not have.
    pub fn static_file(&self, version: &str, name: &str) -> Option<(&'static [u8], &'static str)> {
        if version != self.version {
            return None;
        }
        let contents = match name {
            "latchkey.js" => SDK.as_bytes(),
            name => FILES.iter().find(|(n, _)| *n == name)?.1,
        };
        Some((contents, content_type(name)))
    }
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("html") => "text/html; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_name_the_versioned_static_directory() {
        let console = Console::new();
        let base = format!("{STATIC_PREFIX}/{}/", console.version);
        for page in Page::ALL {
            let html = console.page(page);
            assert!(!html.contains(STATIC_PLACEHOLDER), "{page:?}");
            assert!(html.contains(&base), "{page:?} names {base}");
        }
    }

    #[test]
    fn every_file_of_the_directory_is_listed() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/console/assets/console");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        on_disk.sort();
        let listed: Vec<&str> = FILES.iter().map(|(name, _)| *name).collect();
        assert_eq!(on_disk, listed, "list new files in `FILES`, in order");
    }

    #[test]
    fn static_files_are_served_for_this_version_only() {
        let console = Console::new();
        let version = console.version.clone();
        let (sdk, kind) = console.static_file(&version, "latchkey.js").expect("sdk");
        assert_eq!(
            (sdk, kind),
            (SDK.as_bytes(), "text/javascript; charset=utf-8")
        );
        assert!(console.static_file(&version, "console.html").is_some());
        assert!(console.static_file("000000000000", "latchkey.js").is_none());
        assert!(console.static_file(&version, "../mod.rs").is_none());
        assert!(console.static_file(&version, "nope.js").is_none());
    }
}
