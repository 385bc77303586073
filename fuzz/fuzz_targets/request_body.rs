//! The request-body field parser (`http::fields`) on arbitrary bytes, against every body
//! spec of the route table, read the way the spec says (each field by its kind and
//! presence). It may refuse anything, but never panic, never report a bug of its own (a
//! 500), and never accept a string its spec does not allow.
#![no_main]

use std::sync::LazyLock;

use latchkey::http::body::{BodySpec, Kind};
use latchkey::http::error::ApiError;
use latchkey::http::fields::{Fields, JsonBody};
use latchkey::http::routes;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

static SPECS: LazyLock<Vec<&'static BodySpec>> = LazyLock::new(|| {
    let mut specs: Vec<&'static BodySpec> = routes::all().iter().filter_map(|r| r.body).collect();
    specs.dedup_by_key(|spec| spec.name);
    specs
});

/// Reads every field of `spec` from `map`; the strings it accepted.
fn read_all(spec: &'static BodySpec, map: Map<String, Value>) -> Result<Vec<String>, ApiError> {
    let mut f = Fields::new(JsonBody { spec, map });
    let mut strings = Vec::new();
    for field in spec.fields {
        match (&field.kind, field.required) {
            (Kind::Text(_), true) => strings.extend(f.required_str(field.name)),
            (Kind::Text(_), false) => strings.extend(f.optional_str(field.name)),
            (Kind::Bool, _) => drop(f.optional_bool(field.name)),
            (Kind::TextList { .. }, _) => {
                let list = f.optional_list(field.name, |s| Ok::<_, Vec<String>>(s.to_owned()));
                strings.extend(list.into_iter().flatten());
            }
            (Kind::Object { .. }, _) => drop(f.optional_object(field.name)),
        }
    }
    f.finish(|| Some(strings))
}

fuzz_target!(|data: &[u8]| {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    for spec in SPECS.iter() {
        match read_all(spec, map.clone()) {
            Ok(strings) => {
                for s in strings {
                    assert!(!s.contains('\0'), "{}: accepted a NUL", spec.name);
                }
            }
            Err(ApiError::Internal(bug)) => panic!("{}: {bug}", spec.name),
            Err(_) => {}
        }
    }
});
