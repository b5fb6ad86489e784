//! What the fuzz targets share (`host/src/fuzz/`, `core-wasm/src/fuzz/`):
//! how many cases to run, the small committed corpus of real-shaped inputs
//! (`tests/fuzz/corpus/<target>/`), and structure-aware generators: JSON
//! of the corpus's shapes with values mutated (wrong types, boundary
//! numbers, huge / deep / unicode / NUL strings, keys dropped or added),
//! broken bytes, and nesting deeper than any parser allows.
//!
//! cargo-fuzz needs a nightly toolchain, so the targets are proptest
//! properties run at scale: a few hundred cases in the normal suite,
//! [`CASES_ENV`] cases when that is set (see `docs/fuzzing.md`).

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;
use serde_json::{Map, Number, Value};
use std::path::PathBuf;

/// `STASH2PLEX_FUZZ_CASES=<n>`: run every fuzz target for `n` cases.
pub const CASES_ENV: &str = "STASH2PLEX_FUZZ_CASES";

/// Cases for one target: `short` in the normal suite, [`CASES_ENV`] when set.
pub fn cases(short: u32) -> u32 {
    match std::env::var(CASES_ENV) {
        Ok(text) => text
            .trim()
            .replace('_', "")
            .parse()
            .unwrap_or_else(|_| panic!("{CASES_ENV} must be a whole number of cases, got {text:?}")),
        Err(_) => short,
    }
}

/// proptest's configuration for a fuzz target: [`cases`], failures kept
/// in `proptest-regressions/` next to the target (committed when they
/// record a bug found).
pub fn config(short: u32) -> Config {
    Config { cases: cases(short), max_shrink_iters: 4096, ..Config::default() }
}

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz").join("corpus").join(target)
}

/// The committed seeds of `target`, in file-name order.
pub fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the corpus {} cannot be read: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the corpus {} is empty", dir.display());
    files.iter().map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).collect()
}

/// The seeds of `target` as JSON (every seed must be JSON).
pub fn corpus_json(target: &str) -> Vec<Value> {
    corpus(target)
        .into_iter()
        .enumerate()
        .map(|(i, bytes)| {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("seed {i} of the {target} corpus: {e}"))
        })
        .collect()
}

// ------------------------------------------------------------ values

/// Strings a parser must survive: empty, blank, ASCII, any Unicode
/// (controls and NUL included), emoji and combining marks, look-alikes of
/// numbers and booleans, and now and then a very long one.
pub fn nasty_string() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "[a-zA-Z0-9 _./:-]{0,24}",
        4 => any::<String>(),
        2 => prop::sample::select(vec![
            "", " ", "\u{0}", "\t\r\n", "null", "true", "yes", "0", "1", "-1", "1.0", "1e309", "-0", "NaN", "inf",
            "9223372036854775808", "18446744073709551616", "0x10", " 7 ", "é", "日本語", "🎬\u{200d}🎥",
            "e\u{301}", "\u{202e}evil", "\u{feff}", "../..", "%2F", "a\u{0}b", "\u{7f}", "\u{85}", "\u{2028}",
        ])
        .prop_map(str::to_string),
        1 => (any::<char>(), 1usize..70_000).prop_map(|(c, n)| std::iter::repeat_n(c, n).collect()),
    ]
    .boxed()
}

/// Numbers at the edges: zero, ±1, the ends of i64/u64, 2^53 + 1,
/// fractions, the largest and smallest finite floats, and any i64/f64.
pub fn boundary_number() -> BoxedStrategy<Number> {
    let fixed = prop::sample::select(vec![
        Number::from(0),
        Number::from(1),
        Number::from(-1),
        Number::from(i64::MIN),
        Number::from(i64::MAX),
        Number::from(u64::MAX),
        Number::from(9_007_199_254_740_993u64),
        Number::from(65_535),
        Number::from(65_536),
        Number::from(u32::MAX),
    ]);
    let floats = prop::sample::select(vec![0.5, 1.0, -0.0, 1e15, 1e308, -1e308, 5e-324, 99.999, 2.5e9]);
    prop_oneof![
        3 => fixed,
        2 => floats.prop_filter_map("finite", Number::from_f64),
        2 => any::<i64>().prop_map(Number::from),
        1 => any::<f64>().prop_filter_map("finite", Number::from_f64),
    ]
    .boxed()
}

pub fn scalar() -> BoxedStrategy<Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        3 => boundary_number().prop_map(Value::Number),
        4 => nasty_string().prop_map(Value::String),
    ]
    .boxed()
}

/// Any JSON value, a few levels deep.
pub fn json_value() -> BoxedStrategy<Value> {
    scalar()
        .prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((nasty_string(), inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
        .boxed()
}

/// Arrays or objects nested `depth` deep (serde_json stops at 128).
pub fn deep_json(max_depth: usize) -> BoxedStrategy<Vec<u8>> {
    (1..=max_depth, any::<bool>())
        .prop_map(|(depth, objects)| {
            let (open, close) = if objects { ("{\"a\":", "}") } else { ("[", "]") };
            format!("{}1{}", open.repeat(depth), close.repeat(depth)).into_bytes()
        })
        .boxed()
}

// ------------------------------------------------------------ mutations

/// One change to a JSON tree, applied at the node an [`Index`] picks.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// The node becomes another value (any type).
    Replace(Value),
    /// The node is removed from its object or array.
    Remove,
    /// An object gains a key (or an array an element).
    Insert(String, Value),
    /// A scalar changes its JSON type: `5` ↔ `"5"`, `true` → `"true"`.
    Retype,
    /// The node is wrapped in an array (`x` → `[x]`).
    Wrap,
    /// An array's first element is repeated many times.
    Repeat(usize),
}

pub fn mutation() -> BoxedStrategy<Mutation> {
    prop_oneof![
        5 => json_value().prop_map(Mutation::Replace),
        2 => Just(Mutation::Remove),
        2 => (nasty_string(), json_value()).prop_map(|(k, v)| Mutation::Insert(k, v)),
        2 => Just(Mutation::Retype),
        1 => Just(Mutation::Wrap),
        1 => (2usize..300).prop_map(Mutation::Repeat),
    ]
    .boxed()
}

/// How many nodes `v` has (itself included).
fn count(v: &Value) -> usize {
    1 + match v {
        Value::Array(items) => items.iter().map(count).sum(),
        Value::Object(map) => map.values().map(count).sum(),
        _ => 0,
    }
}

/// Apply `m` to node number `target` (pre-order) of `v`.
fn apply(v: &mut Value, target: usize, m: &Mutation) {
    fn walk(v: &mut Value, target: &mut usize, m: &Mutation) -> bool {
        if *target == 0 {
            change(v, m);
            return true;
        }
        *target -= 1;
        match v {
            Value::Array(items) => {
                for i in 0..items.len() {
                    if *target == 0 && matches!(m, Mutation::Remove) {
                        items.remove(i);
                        return true;
                    }
                    if walk(&mut items[i], target, m) {
                        return true;
                    }
                }
            }
            Value::Object(map) => {
                let keys: Vec<String> = map.keys().cloned().collect();
                for k in keys {
                    if *target == 0 && matches!(m, Mutation::Remove) {
                        map.remove(&k);
                        return true;
                    }
                    if let Some(child) = map.get_mut(&k)
                        && walk(child, target, m)
                    {
                        return true;
                    }
                }
            }
            _ => {}
        }
        false
    }
    let mut t = target;
    walk(v, &mut t, m);
}

fn change(v: &mut Value, m: &Mutation) {
    match m {
        Mutation::Replace(new) => *v = new.clone(),
        // Removing the root: it becomes null.
        Mutation::Remove => *v = Value::Null,
        Mutation::Insert(k, new) => match v {
            Value::Object(map) => {
                map.insert(k.clone(), new.clone());
            }
            Value::Array(items) => items.push(new.clone()),
            _ => *v = new.clone(),
        },
        Mutation::Retype => {
            *v = match std::mem::take(v) {
                Value::Number(n) => Value::String(n.to_string()),
                Value::Bool(b) => Value::String(b.to_string()),
                Value::String(s) => match serde_json::from_str::<Number>(s.trim()) {
                    Ok(n) => Value::Number(n),
                    Err(_) => Value::Bool(!s.is_empty()),
                },
                Value::Null => Value::String(String::new()),
                Value::Array(items) => {
                    Value::Object(items.into_iter().enumerate().map(|(i, x)| (i.to_string(), x)).collect::<Map<_, _>>())
                }
                Value::Object(map) => Value::Array(map.into_iter().map(|(_, x)| x).collect()),
            }
        }
        Mutation::Wrap => *v = Value::Array(vec![std::mem::take(v)]),
        Mutation::Repeat(n) => {
            if let Value::Array(items) = v
                && let Some(first) = items.first().cloned()
            {
                items.extend(std::iter::repeat_n(first, *n));
            }
        }
    }
}

/// `seed` with 1–4 mutations at nodes chosen by the strategy.
pub fn mutate(seed: Value) -> BoxedStrategy<Value> {
    prop::collection::vec((any::<Index>(), mutation()), 1..=4)
        .prop_map(move |changes| {
            let mut v = seed.clone();
            for (at, m) in &changes {
                let target = at.index(count(&v));
                apply(&mut v, target, m);
            }
            v
        })
        .boxed()
}

/// A seed picked from `seeds`, mutated.
pub fn mutated(seeds: Vec<Value>) -> BoxedStrategy<Value> {
    assert!(!seeds.is_empty(), "no seeds to mutate");
    (any::<Index>(), prop::collection::vec((any::<Index>(), mutation()), 0..=4))
        .prop_map(move |(pick, changes)| {
            let mut v = seeds[pick.index(seeds.len())].clone();
            for (at, m) in &changes {
                let target = at.index(count(&v));
                apply(&mut v, target, m);
            }
            v
        })
        .boxed()
}

/// Byte-level damage: cut short, a byte changed, junk inserted.
pub fn damaged(bytes: Vec<u8>) -> BoxedStrategy<Vec<u8>> {
    (any::<Index>(), 0u8..3, any::<u8>(), prop::collection::vec(any::<u8>(), 0..8))
        .prop_map(move |(at, kind, byte, junk)| {
            let mut b = bytes.clone();
            let i = if b.is_empty() { 0 } else { at.index(b.len()) };
            match kind {
                0 => b.truncate(i),
                1 if !b.is_empty() => b[i] = byte,
                _ => {
                    b.splice(i..i, junk);
                }
            }
            b
        })
        .boxed()
}

/// Bytes for a parser of the seeds' format: mostly mutated seeds, also
/// damaged ones, any JSON, very deep JSON, and random bytes.
pub fn input_bytes(seeds: Vec<Value>) -> BoxedStrategy<Vec<u8>> {
    let as_bytes: Vec<Vec<u8>> = seeds.iter().map(|v| serde_json::to_vec(v).unwrap_or_default()).collect();
    let damaged_seed = (any::<Index>()).prop_flat_map(move |i| damaged(as_bytes[i.index(as_bytes.len())].clone()));
    prop_oneof![
        6 => mutated(seeds).prop_map(|v| serde_json::to_vec(&v).unwrap_or_default()),
        2 => damaged_seed,
        1 => json_value().prop_map(|v| serde_json::to_vec(&v).unwrap_or_default()),
        1 => deep_json(300),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
    .boxed()
}

/// A credential-like value (a Plex token, a Stash cookie or API key) that
/// no error message may repeat: long enough not to occur by chance.
pub fn secret() -> BoxedStrategy<String> {
    "[A-Za-z0-9_=+/-]{16,40}".prop_map(|s| format!("S3cr{s}")).boxed()
}

/// Two floats equal up to the last few bits: serde_json's default float
/// reader is documented to be within a bit of the exact value (its
/// `float_roundtrip` feature makes it exact at twice the cost), so a
/// number written and read back may differ in its last digit (and a
/// subnormal one by more, relatively).
pub fn close(a: f64, b: f64) -> bool {
    let diff = (a - b).abs();
    a == b || diff <= a.abs().max(b.abs()) * 4.0 * f64::EPSILON || diff <= f64::MIN_POSITIVE
}

/// `a` and `b` are the same JSON, numbers compared with [`close`].
pub fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            x.as_f64().zip(y.as_f64()).is_some_and(|(x, y)| close(x, y))
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    #[test]
    fn mutations_change_the_seed_and_reach_every_node() {
        let seed = serde_json::json!({"a": [1, {"b": "x"}], "c": true});
        assert_eq!(count(&seed), 6);
        let mut v = seed.clone();
        apply(&mut v, 5, &Mutation::Retype);
        assert_eq!(v, serde_json::json!({"a": [1, {"b": "x"}], "c": "true"}));
        let mut v = seed.clone();
        apply(&mut v, 4, &Mutation::Remove);
        assert_eq!(v, serde_json::json!({"a": [1, {}], "c": true}));
        let mut v = seed.clone();
        apply(&mut v, 2, &Mutation::Remove);
        assert_eq!(v, serde_json::json!({"a": [{"b": "x"}], "c": true}));
        let mut runner = TestRunner::deterministic();
        let strategy = mutate(seed.clone());
        let changed =
            (0..50).filter(|_| strategy.new_tree(&mut runner).map(|t| t.current()).ok() != Some(seed.clone()));
        assert!(changed.count() > 40);
    }

    #[test]
    fn the_case_count_comes_from_the_environment_only_when_set() {
        if std::env::var_os(CASES_ENV).is_none() {
            assert_eq!(cases(300), 300);
        }
    }
}
