//! Fuzz target: the host's allow-list of Plex requests
//! (`capabilities::plex_routes::check`, then `net::plex`'s validation and
//! the URL it builds), seeded from `tests/fuzz/corpus/plex_requests/`.
//!
//! Properties: every request syncing makes, with any ids, fields, tags
//! and text values, is allowed and goes to exactly the configured server
//! with its path and query intact; every near miss (another method, case,
//! a trailing or doubled slash, `..`, encoded slashes, a host, userinfo or
//! port in the path, an injected `X-Plex-Token` in the path, query or
//! headers, a parameter or value outside the rule, too many ids, an image
//! body where none belongs) is refused with a short sentence that never
//! repeats the token; and whatever a policy sends, anything allowed lies
//! inside an independently written model of the allow-list. Of Stash's
//! image URLs (`ImageGrants`), only those a look-up handed out are granted.

use super::*;
use crate::capabilities::stash::ImageGrants;
use crate::net::http::Method as HttpMethod;
use crate::net::plex::{PlexClient, PlexRequest};
use crate::runtime::wit::stash as wit;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;
use stash2plex_testkit::{fuzz, parse_query};
use std::time::Duration;

const BASE: &str = "http://192.168.1.10:32400";

fn client() -> PlexClient {
    PlexClient::new(BASE, "the-owners-token", "fuzz", Duration::from_secs(1), Duration::from_secs(1), None)
}

fn to_transport(r: &Request) -> PlexRequest {
    PlexRequest {
        method: match r.method {
            Method::Get => HttpMethod::Get,
            Method::Put => HttpMethod::Put,
            Method::Post => HttpMethod::Post,
        },
        path: r.path.clone(),
        query: r.query.clone(),
        headers: r.headers.clone(),
        body: None,
        timeout: None,
    }
}

/// Both gates a request passes before it is sent.
fn allowed(r: &Request) -> Result<(), String> {
    check(r).map(|_| ())?;
    PlexClient::validate(&to_transport(r)).map_err(|e| e.to_string())
}

/// The allow-list again, written segment by segment (not with the
/// checker's patterns), for the "anything allowed is inside" property.
fn in_model(r: &Request) -> bool {
    let key =
        |s: &str| !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
    let keys = |s: &str| s.split(',').count() <= 50 && s.split(',').all(key);
    let segs: Vec<&str> = r.path.strip_prefix('/').map(|p| p.split('/').collect()).unwrap_or_default();
    let path_ok = match (r.method, segs.as_slice()) {
        (Method::Get, ["identity"] | ["library", "sections"] | ["activities"]) => true,
        (Method::Get, ["library", "sections", id, "all" | "refresh"]) => key(id),
        (Method::Get, ["library", "metadata", ids]) => keys(ids),
        (Method::Get | Method::Post, ["library", "metadata", id, "posters" | "arts"]) => key(id),
        (Method::Put, ["library", "sections", id, "all"]) => key(id),
        (Method::Put, [":", "rate"]) => true,
        (Method::Put, ["library", "metadata", id, "poster" | "art"]) => key(id),
        _ => false,
    };
    let no_token = !r.query.iter().any(|(k, _)| k.eq_ignore_ascii_case("x-plex-token"))
        && !r.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("x-plex-token"));
    let headers_ok = r.headers.iter().all(|(k, v)| {
        (k.eq_ignore_ascii_case("x-plex-container-start") || k.eq_ignore_ascii_case("x-plex-container-size"))
            && !v.chars().any(char::is_control)
    });
    let image_ok = matches!(r.body, Body::Empty) || (r.method == Method::Post && segs.len() == 4);
    path_ok && no_token && headers_ok && image_ok && r.query.iter().all(|(k, v)| query_in_model(r.method, &segs, k, v))
}

/// May this parameter go with this method and path (written by hand, as
/// the model above)?
fn query_in_model(method: Method, segs: &[&str], key: &str, value: &str) -> bool {
    let field = |f: &str| {
        ["title", "titleSort", "summary", "tagline", "originallyAvailableAt", "studio", "contentRating"].contains(&f)
    };
    let tag = |t: &str| ["actor", "genre", "collection", "label"].contains(&t);
    let hex40 = |h: &str| h.len() == 40 && h.bytes().all(|b| b.is_ascii_hexdigit());
    let edit = || match key.split_once('.') {
        _ if key == "type" || key == "id" => true,
        Some((f, "value" | "locked")) if field(f) => true,
        Some((t, "locked")) => tag(t),
        Some((t_n, "tag.tag")) => t_n
            .strip_suffix(']')
            .and_then(|x| x.split_once('['))
            .is_some_and(|(t, n)| tag(t) && !n.is_empty() && n.len() <= 4 && n.bytes().all(|b| b.is_ascii_digit())),
        Some((t, "tag.tag-")) => t.strip_suffix("[]").is_some_and(tag),
        _ => false,
    };
    match (method, segs) {
        (Method::Get, [_, "sections", _, "all"]) => match key {
            "type" => true,
            "sort" => value == "addedAt:desc",
            "file" | "title" => !value.is_empty(),
            _ => false,
        },
        (Method::Get, [_, "sections", _, "refresh"]) => key == "path" && !value.is_empty(),
        (Method::Put, [_, "sections", _, "all"]) => edit(),
        (Method::Put, [":", "rate"]) => match key {
            "key" => {
                !value.is_empty()
                    && value.len() <= 64
                    && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
            }
            "identifier" => value == "com.plexapp.plugins.library",
            "rating" => !value.is_empty(),
            _ => false,
        },
        (Method::Put, [_, "metadata", _, "poster"]) => {
            key == "url" && value.strip_prefix("upload://posters/").is_some_and(hex40)
        }
        (Method::Put, [_, "metadata", _, "art"]) => {
            key == "url" && value.strip_prefix("upload://arts/").is_some_and(hex40)
        }
        _ => false,
    }
}

/// Allowed ⇒ sent to the configured server, path and query intact.
fn check_wire(r: &Request) -> Result<(), TestCaseError> {
    let url = client().url(&to_transport(r));
    if url.len() >= usize::from(u16::MAX) {
        // Longer than any URI the HTTP stack sends: refused before sending.
        prop_assert!(url.parse::<ureq::http::Uri>().is_err(), "a {}-byte URI", url.len());
        return Ok(());
    }
    let uri: ureq::http::Uri = url.parse().map_err(|e| TestCaseError::fail(format!("{url}: {e}")))?;
    prop_assert_eq!(uri.authority().map(|a| a.as_str()), Some("192.168.1.10:32400"), "{}", url);
    prop_assert_eq!(uri.path(), r.path.as_str(), "{}", url);
    let query = parse_query(uri.query().unwrap_or(""));
    prop_assert_eq!(&query, &r.query, "{}", url);
    Ok(())
}

// ---- requests syncing makes ------------------------------------------------

/// Values for a route's placeholders.
#[derive(Debug, Clone)]
struct Fill {
    id: String,
    ids: String,
    n: String,
    hex: String,
    field: &'static str,
    tag: &'static str,
    text: String,
}

fn fills() -> impl Strategy<Value = Fill> {
    let key = "[A-Za-z0-9_-]{1,64}";
    (
        key,
        prop::collection::vec(key, 1..=50).prop_map(|k| k.join(",")),
        "[0-9]{1,4}",
        "[0-9a-fA-F]{40}",
        prop::sample::select(EDITABLE_FIELDS.to_vec()),
        prop::sample::select(TAG_FIELDS.to_vec()),
        fuzz::nasty_string().prop_filter("a {text} is not empty", |t| !t.is_empty()),
    )
        .prop_map(|(id, ids, n, hex, field, tag, text)| Fill { id, ids, n, hex, field, tag, text })
}

fn fill(pattern: &str, f: &Fill) -> String {
    pattern
        .replace("{ids}", &f.ids)
        .replace("{id}", &f.id)
        .replace("{n}", &f.n)
        .replace("{hex}", &f.hex)
        .replace("{field}", f.field)
        .replace("{tag}", f.tag)
        .replace("{text}", &f.text)
}

/// A request of route `ROUTES[i]` with any placeholder values, any subset
/// of its query parameters and headers (in any case), any values where
/// the rule fixes none.
fn legit() -> impl Strategy<Value = Request> {
    (
        any::<Index>(),
        fills(),
        prop::collection::vec((any::<Index>(), fuzz::nasty_string()), 0..6),
        any::<u64>(),
        any::<bool>(),
    )
        .prop_map(|(pick, f, params, headers, image)| {
            let route = &ROUTES[pick.index(ROUTES.len())];
            let mut query = Vec::new();
            if !route.query.is_empty() {
                for (which, value) in params {
                    let rule = route.query[which.index(route.query.len())];
                    query.push(match rule.split_once('=') {
                        Some((k, v)) => (fill(k, &f), fill(v, &f)),
                        None => (fill(rule, &f), value),
                    });
                }
            }
            let headers = route
                .headers
                .iter()
                .enumerate()
                .filter(|(i, _)| headers >> i & 1 == 1)
                .map(|(i, h)| {
                    let name = if headers >> (i + 8) & 1 == 1 { h.to_ascii_lowercase() } else { h.to_string() };
                    (name, (headers >> 16 & 0xfff).to_string())
                })
                .collect();
            let body = if image && route.body == BodyRule::StashImage {
                Body::StashImage("http://127.0.0.1:9999/scene/1/screenshot".into())
            } else {
                Body::Empty
            };
            Request { method: route.method, path: fill(route.path, &f), query, headers, body, timeout_ms: None }
        })
}

// ---- near misses -----------------------------------------------------------

/// `r` changed in one way that the allow-list must refuse; the secret is
/// the value of any token it smuggles in.
fn near_miss(r: &Request, how: usize, secret: &str, noise: &str) -> Request {
    let mut m = r.clone();
    let p = r.path.clone();
    match how {
        0 => m.path = p.to_uppercase(),
        1 => m.path = format!("{p}/"),
        2 => m.path = format!("/{p}"),
        3 => m.path = p.replacen('/', "/../", 2),
        4 => {
            m.path = match p.rfind('/') {
                Some(i) if i > 0 => format!("{}%2F{}", &p[..i], &p[i + 1..]),
                _ => format!("%2F{}", &p[1..]),
            }
        }
        5 => m.path = format!("{p}?X-Plex-Token={secret}"),
        6 => m.path = format!("{p}#{noise}"),
        7 => m.path = format!("http://evil.example{p}"),
        8 => m.path = format!("//evil.example{p}"),
        9 => m.path = p.replacen('/', "/evil.example:32400/", 1),
        10 => m.path = p.replacen('/', "/user:pw@", 1),
        11 => m.path = format!("{p}/{noise}x"),
        12 => m.path = format!("{p}\u{0}"),
        13 => m.path = p.replacen('/', "\u{ff0f}", 1),
        14 => m.query.push(("X-Plex-Token".into(), secret.into())),
        15 => m.query.push(("x-plex-token".into(), secret.into())),
        16 => m.query.push(("X-PLEX-TOKEN".into(), secret.into())),
        17 => m.headers.push(("X-Plex-Token".into(), secret.into())),
        18 => m.headers.push(("x-plex-token".into(), secret.into())),
        19 => m.headers.push(("Host".into(), "evil.example".into())),
        20 => m.query.push(("url".into(), format!("http://evil.example/{noise}"))),
        21 => m.query.push(("includeGuids".into(), "1".into())),
        22 => m.query.push(("thumb.value".into(), "http://evil.example/x.jpg".into())),
        23 => m.body = Body::StashImage("http://127.0.0.1:9999/graphql".into()),
        24 => m.headers.push(("X-Plex-Container-Start".into(), "0\r\nX-Plex-Token: x".into())),
        25 => m.method = if r.method == Method::Put { Method::Post } else { Method::Put },
        _ => m.headers.push((format!("X-{noise}"), "1".into())),
    }
    m
}

/// Would `near_miss(r, how, ..)` still be a request syncing makes? (Some
/// changes only miss for some routes: a header on a route with paging,
/// an image on an upload, another method where the path has two.)
fn still_legit(r: &Request, how: usize, m: &Request) -> bool {
    match how {
        23 => r.method == Method::Post,
        25 => in_model(m),
        _ => false,
    }
}

/// A Stash image URL as a scene look-up hands it to the policy.
fn image_urls() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["http://127.0.0.1:9999", "https://stash.lan", "http://[::1]:9999"]),
        prop::sample::select(vec!["scene", "performer", "studio", "tag"]),
        "[0-9]{1,20}",
        prop::option::of("[0-9]{1,20}"),
    )
        .prop_map(|(origin, kind, id, t)| {
            let image = if kind == "scene" { "screenshot" } else { "image" };
            format!("{origin}/{kind}/{id}/{image}{}", t.map(|t| format!("?t={t}")).unwrap_or_default())
        })
}

proptest! {
    #![proptest_config(fuzz::config(1000))]

    #[test]
    fn fuzz_plex_requests_syncing_makes_are_allowed_and_sent_intact(r in legit()) {
        prop_assert_eq!(allowed(&r), Ok(()), "{:?}", r);
        prop_assert!(in_model(&r), "the model refuses a legit request: {r:?}");
        check_wire(&r)?;
    }

    #[test]
    fn fuzz_plex_requests_near_misses_are_refused(
        r in legit(),
        how in 0usize..27,
        secret in fuzz::secret(),
        noise in "[a-z]{1,8}",
    ) {
        let m = near_miss(&r, how, &secret, &noise);
        if still_legit(&r, how, &m) {
            return Ok(());
        }
        let refusal = allowed(&m);
        prop_assert!(refusal.is_err(), "near miss {how} allowed: {m:?}");
        let text = refusal.unwrap_err();
        // A refused path is shown (clipped) to say what was refused; the
        // sandbox never has the real token, and the log scrubs it anyway.
        if how != 5 {
            prop_assert!(!text.contains(&secret), "the refusal repeats the token: {text}");
        }
        prop_assert!(text.chars().count() <= 400, "a {}-char refusal", text.chars().count());
        prop_assert!(!in_model(&m) || how == 24, "the model allows near miss {how}: {m:?}");
    }

    #[test]
    fn fuzz_plex_requests_anything_allowed_is_inside_the_model(
        method in prop::sample::select(vec![Method::Get, Method::Put, Method::Post]),
        path in prop_oneof![
            3 => legit().prop_map(|r| r.path),
            2 => fuzz::mutated(fuzz::corpus_json("plex_requests"))
                .prop_map(|v| v.as_array().and_then(|a| a.first()).and_then(|r| r.get("path")).and_then(Value::as_str).unwrap_or("/").to_string()),
            2 => fuzz::nasty_string().prop_map(|s| format!("/{s}")),
            1 => "(/[a-z:.%0-9,]{0,12}){1,5}",
        ],
        query in prop::collection::vec((prop_oneof![fuzz::nasty_string(), Just("X-Plex-Token".to_string()), Just("type".to_string()), Just("title.value".to_string())], fuzz::nasty_string()), 0..4),
        headers in prop::collection::vec((prop_oneof![Just("X-Plex-Container-Size".to_string()), Just("X-Plex-Token".to_string()), "[A-Za-z-]{1,20}"], fuzz::nasty_string()), 0..2),
    ) {
        let r = Request { method, path, query, headers, body: Body::Empty, timeout_ms: None };
        if allowed(&r).is_ok() {
            prop_assert!(in_model(&r), "allowed outside the model: {r:?}");
            check_wire(&r)?;
        }
    }

    #[test]
    fn fuzz_image_grants_only_what_a_look_up_handed_out(
        granted in prop::collection::vec(image_urls(), 1..6),
        pick in any::<prop::sample::Index>(),
        tweak in 0u8..5,
    ) {
        let grants = ImageGrants::default();
        let scene = wit::Scene {
            id: "1".into(), title: None, code: None, details: None, director: None, date: None, rating100: None,
            organized: false, urls: Vec::new(), studio: None, tags: Vec::new(), groups: Vec::new(), files: Vec::new(),
            screenshot_url: Some(granted[0].clone()),
            performers: granted[1..].iter().map(|u| wit::Performer {
                id: "2".into(), name: "P".into(), disambiguation: None, gender: None, image_url: Some(u.clone()),
            }).collect(),
            created_at: String::new(), updated_at: String::new(),
        };
        grants.grant_scene(&scene);
        for u in &granted {
            prop_assert!(grants.allows(u), "{u} was handed out");
        }
        let base = &granted[pick.index(granted.len())];
        let near = match tweak {
            0 => format!("{base}&apikey=x"),
            1 => base.to_uppercase(),
            2 => format!("{base}/"),
            3 => base.replacen("://", "://evil.example@", 1),
            _ => base[..base.len() - 1].to_string(),
        };
        prop_assert_eq!(grants.allows(&near), granted.contains(&near), "{}", near);
    }

    #[test]
    fn fuzz_plex_requests_corpus_requests_are_allowed(pick in any::<Index>()) {
        let requests: Vec<Value> = fuzz::corpus_json("plex_requests").into_iter().flat_map(|v| v.as_array().cloned().unwrap_or_default()).collect();
        let v = &requests[pick.index(requests.len())];
        let pairs = |k: &str| -> Vec<(String, String)> {
            v.get(k).and_then(Value::as_array).map(|a| a.iter().filter_map(|p| Some((p.get(0)?.as_str()?.to_string(), p.get(1)?.as_str()?.to_string()))).collect()).unwrap_or_default()
        };
        let r = Request {
            method: match v["method"].as_str() { Some("PUT") => Method::Put, Some("POST") => Method::Post, _ => Method::Get },
            path: v["path"].as_str().unwrap_or_default().to_string(),
            query: pairs("query"),
            headers: pairs("headers"),
            body: v["body"]["stash_image"].as_str().map_or(Body::Empty, |u| Body::StashImage(u.to_string())),
            timeout_ms: None,
        };
        prop_assert_eq!(allowed(&r), Ok(()), "{:?}", r);
        prop_assert!(in_model(&r));
    }
}

/// Found while writing this target: the matcher tried every split of a
/// path for `{ids}` and split the whole rest each time, so a policy's
/// 40 KB path took 37 s to refuse (and 4 MiB hours), on the drainer's
/// thread, outside the sandbox's fuel and epoch limits. Now one pass.
#[test]
fn fuzz_plex_requests_a_huge_path_or_parameter_is_judged_in_one_pass() {
    let req = |method, path: String, query: Vec<(String, String)>| Request {
        method,
        path,
        query,
        headers: Vec::new(),
        body: Body::Empty,
        timeout_ms: None,
    };
    let ids = "1,".repeat(2 << 20);
    for path in [
        format!("/library/metadata/{ids}"),
        format!("/library/metadata/{ids}1/posters"),
        format!("/library/sections/{}/all", "a".repeat(4 << 20)),
    ] {
        assert!(check(&req(Method::Get, path, Vec::new())).is_err());
    }
    let long_title = vec![("title".to_string(), "x".repeat(4 << 20))];
    assert!(check(&req(Method::Get, "/library/sections/1/all".into(), long_title)).is_ok());
    let long_key = vec![(format!("genre[{}].tag.tag", "1".repeat(4 << 20)), "x".into())];
    assert!(check(&req(Method::Put, "/library/sections/1/all".into(), long_key)).is_err());
    let fifty = vec!["k"; 50].join(",");
    assert!(check(&req(Method::Get, format!("/library/metadata/{fifty}"), Vec::new())).is_ok());
    assert!(check(&req(Method::Get, format!("/library/metadata/{fifty},k"), Vec::new())).is_err());
}
