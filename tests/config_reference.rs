//! The repository's documentation agrees with the code: `docs/CONFIGURATION.md` documents
//! exactly the keys of `Settings`, with their defaults, environment names and commands;
//! `config/default.toml` names only real keys with the real defaults; and every file and
//! link the README points at exists in the repository.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use figment::Figment;
use figment::providers::{Format, Toml};
use latchkey::config::Settings;
use serde_json::Value;

const REFERENCE: &str = "docs/CONFIGURATION.md";

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// `section.key` (nested sections joined with dots) -> value, for every leaf of `value`.
fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&path, value, out);
            }
        }
        leaf => {
            out.insert(prefix.to_owned(), leaf.clone());
        }
    }
}

/// The built-in defaults, flattened.
fn settings_defaults() -> BTreeMap<String, Value> {
    let tree = serde_json::to_value(Settings::default()).expect("Settings serialize");
    let mut keys = BTreeMap::new();
    flatten("", &tree, &mut keys);
    keys
}

/// One row of a reference table: key, default, environment, meaning.
struct Row {
    key: String,
    default: String,
    environment: String,
}

/// The text of each backticked span in `cell`.
fn code_spans(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

/// The configuration rows of the reference: table rows whose first cell is a key.
fn reference_rows(doc: &str) -> Vec<Row> {
    doc.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.trim().strip_prefix('|')?.split('|').collect();
            let key = code_spans(cells.first()?).first()?.to_string();
            if cells.len() < 4 || !key.contains('.') || key.contains(' ') {
                return None;
            }
            Some(Row {
                key,
                default: cells[1].trim().to_owned(),
                environment: cells[2].trim().to_owned(),
            })
        })
        .collect()
}

/// Whether the documented (or TOML) default `text` is the value `Settings` has.
fn same_default(value: &Value, text: &str) -> bool {
    if text.starts_with("unset") {
        return value.is_null();
    }
    if text == "number of cores" {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        return value.as_u64() == Some(cores as u64);
    }
    let Some(shown) = code_spans(text).first().copied() else {
        return false;
    };
    match value {
        Value::String(s) => match (
            humantime::parse_duration(s),
            humantime::parse_duration(shown),
        ) {
            (Ok(a), Ok(b)) => a == b,
            _ => s == shown,
        },
        Value::Array(items) => items.is_empty() && shown == "[]",
        other => shown.parse::<Value>().is_ok_and(|v| v == *other),
    }
}

#[test]
fn reference_documents_every_key_with_its_default_and_environment_name() {
    let doc = repo_file(REFERENCE);
    let rows = reference_rows(&doc);
    let defaults = settings_defaults();
    let mut problems = Vec::new();
    for row in &rows {
        let Some(value) = defaults.get(&row.key) else {
            problems.push(format!(
                "{}: documented, but Settings has no such key",
                row.key
            ));
            continue;
        };
        if !same_default(value, &row.default) {
            problems.push(format!(
                "{}: documented default {:?}, Settings has {value}",
                row.key, row.default
            ));
        }
        let env = format!("LATCHKEY_{}", row.key.to_uppercase().replace('.', "__"));
        if code_spans(&row.environment).first() != Some(&env.as_str()) {
            problems.push(format!(
                "{}: environment {:?}, expected `{env}`",
                row.key, row.environment
            ));
        }
    }
    for key in defaults.keys() {
        match rows.iter().filter(|r| &r.key == key).count() {
            1 => {}
            0 => problems.push(format!("{key}: in Settings, missing from {REFERENCE}")),
            n => problems.push(format!("{key}: documented {n} times")),
        }
    }
    assert!(
        problems.is_empty(),
        "{REFERENCE} disagrees with Settings:\n{}",
        problems.join("\n")
    );
}

#[test]
fn default_toml_names_real_keys_with_the_built_in_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml");
    let file: Value = Figment::from(Toml::file_exact(&path))
        .extract()
        .expect("config/default.toml parses");
    let mut keys = BTreeMap::new();
    flatten("", &file, &mut keys);
    let defaults = settings_defaults();
    let mut problems = Vec::new();
    for (key, value) in &keys {
        let text = match value {
            Value::String(s) => format!("`{s}`"),
            Value::Array(items) if items.is_empty() => "`[]`".to_owned(),
            other => format!("`{other}`"),
        };
        match defaults.get(key) {
            None => problems.push(format!("{key}: no such setting")),
            Some(builtin) if !same_default(builtin, &text) => {
                problems.push(format!("{key}: {text} here, {builtin} built in"));
            }
            Some(_) => {}
        }
    }
    assert!(
        problems.is_empty(),
        "config/default.toml:\n{}",
        problems.join("\n")
    );
}

/// The subcommands `latchkey --help` lists (without clap's own `help`).
fn subcommands() -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .arg("--help")
        .output()
        .expect("run latchkey --help");
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn reference_documents_exactly_the_commands_of_the_binary() {
    let doc = repo_file(REFERENCE);
    let commands = subcommands();
    assert!(
        commands.contains(&"check-config".to_owned()),
        "{commands:?}"
    );
    for name in &commands {
        assert!(
            doc.contains(&format!("`latchkey {name}")),
            "`latchkey {name}` is not in {REFERENCE}"
        );
    }
    let documented = doc
        .lines()
        .filter(|l| l.starts_with("| `latchkey"))
        .flat_map(code_spans)
        .filter_map(|span| span.strip_prefix("latchkey "))
        .filter_map(|rest| rest.split_whitespace().next());
    for name in documented {
        assert!(
            commands.iter().any(|c| c == name),
            "{REFERENCE} documents `latchkey {name}`, which does not exist ({commands:?})"
        );
    }
}

/// Whether `word` (from a README code span or code block) names a file or directory of
/// the repository: a `.md` page, or a relative path whose first part is a top-level entry
/// of the repository or that ends in a source extension or `/`. Commands, media types,
/// routes, rates and URLs are not paths.
fn mentions_a_path(word: &str, root: &Path) -> bool {
    let plain = !word.is_empty()
        && !word.starts_with('/')
        && !word.contains("://")
        && !word.contains(|c: char| "{}*<>|$=,".contains(c));
    let first = word.split('/').next().unwrap_or_default();
    let file_like = word.ends_with('/')
        || (!first.is_empty() && root.join(first).exists())
        || Path::new(word).extension().is_some_and(|e| {
            ["rs", "md", "toml", "py", "sh", "yaml", "yml", "lua", "mjs"]
                .iter()
                .any(|x| e == *x)
        });
    // `target/…` is build output (binaries, screenshots): made by the build and the tests,
    // never in the repository.
    let output = word.starts_with("target/");
    plain && !output && (word.ends_with(".md") || (word.contains('/') && file_like))
}

#[test]
fn readme_points_only_at_files_in_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = repo_file("README.md");
    let mut prose = Vec::new();
    let mut code = Vec::new();
    let mut fenced = false;
    for line in readme.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if fenced {
            code.push(line);
        } else {
            prose.push(line);
        }
    }
    let prose = prose.join("\n");
    let mut targets: Vec<String> = Vec::new();
    // Markdown links: [text](target), other than web and in-page links.
    for piece in prose.split("](").skip(1) {
        let target = piece.split(')').next().unwrap_or_default();
        let target = target.split('#').next().unwrap_or_default();
        if !target.is_empty() && !target.contains("://") && !target.starts_with("mailto:") {
            targets.push(target.to_owned());
        }
    }
    // Paths in code spans, and in code blocks (commands, the layout listing).
    let words = code_spans(&prose)
        .into_iter()
        .chain(code)
        .flat_map(str::split_whitespace)
        .map(|w| w.trim_matches(|c: char| "()[]:;\"'`".contains(c)))
        .filter(|w| mentions_a_path(w, root))
        .map(str::to_owned);
    targets.extend(words);
    let missing: Vec<&String> = targets
        .iter()
        .filter(|t| !root.join(t.as_str()).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "README.md points at files that are not in the repository: {missing:?}"
    );
    assert!(
        targets.iter().any(|t| t == REFERENCE),
        "the README does not point at {REFERENCE}"
    );
}
