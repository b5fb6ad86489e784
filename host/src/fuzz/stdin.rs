//! Fuzz target: the JSON Stash writes on a raw plugin's stdin
//! (`plugin::input::parse`), seeded from `tests/fuzz/corpus/stdin/`.
//!
//! Properties: it never panics; a refusal is a typed [`InputError`] of
//! bounded length that never repeats the session cookie or API key of
//! the input; a parsed input never shows them in its debug form; and a
//! well-formed input of any field values reads back exactly (trigger, id,
//! input fields, mode, the Stash address).

use super::*;
use proptest::prelude::*;
use serde_json::{Value, json};
use stash2plex_testkit::fuzz;

/// The longest refusal a user reads (a sentence and a clipped detail).
const MAX_ERROR_CHARS: usize = 600;

/// A corpus seed with its credentials replaced by `secret`.
fn with_secret(mut seed: Value, secret: &str) -> Value {
    if let Some(conn) = seed.get_mut("server_connection").and_then(Value::as_object_mut) {
        if let Some(Value::Object(cookie)) = conn.get_mut("SessionCookie") {
            cookie.insert("Value".into(), json!(secret));
        }
        if conn.contains_key("ApiKey") {
            conn.insert("ApiKey".into(), json!(secret));
        }
    }
    seed
}

/// A seed with a secret, then mutated (the secret may be moved into a
/// place of the wrong type: a cookie as text, a key as a list).
fn secret_inputs() -> impl Strategy<Value = (String, Vec<u8>)> {
    let seeds = fuzz::corpus_json("stdin");
    (fuzz::secret(), any::<prop::sample::Index>(), 0u8..4).prop_flat_map(move |(secret, pick, misplace)| {
        let mut seed = with_secret(seeds[pick.index(seeds.len())].clone(), &secret);
        if let Some(conn) = seed.get_mut("server_connection").and_then(Value::as_object_mut) {
            match misplace {
                0 => {
                    conn.insert("SessionCookie".into(), json!(format!("session={secret}")));
                }
                1 => {
                    conn.insert("ApiKey".into(), json!([secret]));
                }
                2 => {
                    conn.insert("SessionCookie".into(), json!({"Name": "session", "Value": {"v": secret}}));
                }
                _ => {}
            }
        }
        (Just(secret), fuzz::mutate(seed).prop_map(|v| serde_json::to_vec(&v).unwrap_or_default()))
    })
}

fn check_error(e: &InputError, secret: Option<&str>) -> Result<(), TestCaseError> {
    let text = e.to_string();
    let n = text.chars().count();
    prop_assert!(n <= MAX_ERROR_CHARS, "a {n}-char error: {}", text.chars().take(200).collect::<String>());
    prop_assert!(text.contains("stdin"), "the error does not say where: {text}");
    if let Some(secret) = secret {
        prop_assert!(!text.contains(secret), "the error repeats a credential: {text}");
    }
    Ok(())
}

/// One well-formed input: field values of every kind in the right places.
#[derive(Debug, Clone)]
struct Shape {
    scheme: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    cookie: Option<String>,
    hook: Option<(String, Option<u64>, bool, Vec<String>)>,
    mode: Option<String>,
}

fn shapes() -> impl Strategy<Value = Shape> {
    let trigger = prop_oneof![
        prop::sample::select(vec!["Scene.Update.Post", "Scene.Create.Post", "Tag.Merge.Post", "Performer.Update.Post"])
            .prop_map(str::to_string),
        fuzz::nasty_string(),
    ];
    let hook =
        (trigger, prop::option::of(any::<u64>()), any::<bool>(), prop::collection::vec(fuzz::nasty_string(), 0..6));
    (
        prop::option::of(prop::sample::select(vec!["http", "https", "HTTPS", "ftp", ""]).prop_map(str::to_string)),
        prop::option::of(prop_oneof![
            prop::sample::select(vec!["0.0.0.0", "::", "[::]", "", "127.0.0.1", "::1", "stash.lan", "fe80::1"])
                .prop_map(str::to_string),
            "[a-z0-9.-]{1,30}",
        ]),
        prop::option::of(any::<u16>()),
        prop::option::of(fuzz::secret()),
        prop::option::of(hook),
        prop::option::of(fuzz::nasty_string()),
    )
        .prop_map(|(scheme, host, port, cookie, hook, mode)| Shape { scheme, host, port, cookie, hook, mode })
}

fn render(s: &Shape) -> Value {
    let mut conn = serde_json::Map::new();
    if let Some(v) = &s.scheme {
        conn.insert("Scheme".into(), json!(v));
    }
    if let Some(v) = &s.host {
        conn.insert("Host".into(), json!(v));
    }
    if let Some(v) = s.port {
        conn.insert("Port".into(), json!(v));
    }
    if let Some(v) = &s.cookie {
        conn.insert("SessionCookie".into(), json!({"Name": "session", "Value": v, "Quoted": false, "MaxAge": 0}));
    }
    let args = match &s.hook {
        Some((trigger, id, id_as_text, fields)) => {
            let id = match id {
                None => Value::Null,
                Some(n) if *id_as_text => json!(n.to_string()),
                Some(n) => json!(n),
            };
            json!({"hookContext": {"id": id, "type": trigger, "input": {"id": "1"}, "inputFields": fields}})
        }
        None => json!({"mode": s.mode}),
    };
    json!({"server_connection": conn, "args": args})
}

proptest! {
    #![proptest_config(fuzz::config(600))]

    #[test]
    fn fuzz_stdin_never_panics_and_refuses_with_typed_bounded_errors(
        bytes in fuzz::input_bytes(fuzz::corpus_json("stdin")),
    ) {
        match parse(&bytes) {
            Ok(input) => {
                let url = input.connection.base_url();
                prop_assert!(url.starts_with("http://") || url.starts_with("https://"), "{url}");
                if let Invocation::Hook(h) = &input.invocation {
                    prop_assert!(h.id.as_deref().is_none_or(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())));
                }
            }
            Err(e) => check_error(&e, None)?,
        }
    }

    #[test]
    fn fuzz_stdin_never_repeats_the_cookie_or_api_key((secret, bytes) in secret_inputs()) {
        match parse(&bytes) {
            Ok(input) => {
                let shown = format!("{input:?}");
                prop_assert!(!shown.contains(&secret), "the debug form shows a credential: {shown}");
            }
            Err(e) => check_error(&e, Some(&secret))?,
        }
    }

    #[test]
    fn fuzz_stdin_well_formed_inputs_read_back_exactly(shape in shapes()) {
        let bytes = serde_json::to_vec(&render(&shape)).unwrap_or_default();
        let input = parse(&bytes).map_err(|e| TestCaseError::fail(format!("{e} for {shape:?}")))?;
        prop_assert_eq!(input.connection.cookie_value(), shape.cookie.as_deref());
        let url = input.connection.base_url();
        let port = shape.port.unwrap_or(9999);
        prop_assert!(url.ends_with(&format!(":{port}")), "{url}");
        let https = shape.scheme.as_deref() == Some("https");
        prop_assert!(url.starts_with(if https { "https://" } else { "http://" }), "{url}");
        if matches!(shape.host.as_deref().map(str::trim), None | Some("" | "0.0.0.0" | "::" | "[::]")) {
            prop_assert!(url.contains("://127.0.0.1:"), "{url}");
        }
        match (&shape.hook, &input.invocation) {
            (Some((trigger, id, _, fields)), Invocation::Hook(h)) => {
                prop_assert_eq!(&h.trigger, trigger);
                prop_assert_eq!(h.id.clone(), id.map(|n| n.to_string()));
                prop_assert_eq!(&h.input_fields, fields);
                prop_assert_eq!(h.input.clone(), Some(json!({"id": "1"})));
            }
            (None, Invocation::Task { mode, .. }) => {
                prop_assert_eq!(mode.clone(), shape.mode.as_deref().map(|m| m.trim().to_string()));
            }
            (want, got) => prop_assert!(false, "expected {want:?}, got {got:?}"),
        }
    }
}

#[test]
fn fuzz_stdin_corpus_seeds_all_parse() {
    for (i, seed) in fuzz::corpus("stdin").iter().enumerate() {
        assert!(parse(seed).is_ok(), "seed {i}: {:?}", parse(seed).err());
    }
}
