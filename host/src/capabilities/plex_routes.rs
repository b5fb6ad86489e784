//! The Plex requests a policy may make: exactly what syncing needs, as
//! (method, path pattern, allowed query keys, allowed headers, body). The
//! token the host adds is the server owner's, so anything else (minting
//! tokens, server preferences, deleting media, making Plex fetch a URL) is
//! refused before it is sent, with a sentence that says which rule refused
//! it. The same list is written in the WIT comments of `interface plex`
//! (a test keeps the two in step).
//!
//! Patterns: `{id}` is a Plex key (1-64 of `A-Za-z0-9_-`), `{ids}` up to 50
//! of them separated by commas, `{n}` a list index (1-4 digits), `{hex}` a
//! SHA-1 (40 hex digits), `{field}` one of [`EDITABLE_FIELDS`], `{tag}` one
//! of [`TAG_FIELDS`], `{text}` any value. A query entry `key=value` also
//! fixes what the value may be.

use crate::runtime::wit::plex::{Body, Method, Request};

/// Text fields a policy may set and lock on an item.
pub const EDITABLE_FIELDS: &[&str] =
    &["title", "titleSort", "summary", "tagline", "originallyAvailableAt", "studio", "contentRating"];

/// Tag lists a policy may set and lock on an item.
pub const TAG_FIELDS: &[&str] = &["actor", "genre", "collection", "label"];

/// Paging headers (`X-Plex-Container-Start` / `-Size`).
const PAGING: &[&str] = &["X-Plex-Container-Start", "X-Plex-Container-Size"];

/// The query of an edit: fields and tag lists, each with its lock.
const EDIT: &[&str] =
    &["type", "id", "{field}.value", "{field}.locked", "{tag}[{n}].tag.tag", "{tag}[].tag.tag-", "{tag}.locked"];

/// What a route accepts as a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyRule {
    None,
    /// An image from Stash (`stash-image`), uploaded as the body.
    StashImage,
}

/// One allowed kind of request.
#[derive(Debug)]
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub query: &'static [&'static str],
    pub headers: &'static [&'static str],
    pub body: BodyRule,
    /// What syncing uses it for.
    pub purpose: &'static str,
}

pub const ROUTES: &[Route] = &[
    Route {
        method: Method::Get,
        path: "/identity",
        query: &[],
        headers: &[],
        body: BodyRule::None,
        purpose: "health probe (needs no token)",
    },
    Route {
        method: Method::Get,
        path: "/library/sections",
        query: &[],
        headers: &[],
        body: BodyRule::None,
        purpose: "the libraries and their folders; the token check",
    },
    Route {
        method: Method::Get,
        path: "/library/sections/{id}/all",
        query: &["type", "sort=addedAt:desc", "file={text}", "title={text}"],
        headers: PAGING,
        body: BodyRule::None,
        purpose: "a page of a library's items (the path index, newest first to refresh it, by file or title)",
    },
    Route {
        method: Method::Get,
        path: "/library/metadata/{ids}",
        query: &[],
        headers: &[],
        body: BodyRule::None,
        purpose: "items in full (current values, locks and files), up to 50 at once",
    },
    Route {
        method: Method::Put,
        path: "/library/sections/{id}/all",
        query: EDIT,
        headers: &[],
        body: BodyRule::None,
        purpose: "edit and lock an item's fields and tag lists",
    },
    Route {
        method: Method::Put,
        path: "/:/rate",
        query: &["key={id}", "identifier=com.plexapp.plugins.library", "rating={text}"],
        headers: &[],
        body: BodyRule::None,
        purpose: "the user rating of an item",
    },
    Route {
        method: Method::Get,
        path: "/library/metadata/{id}/posters",
        query: &[],
        headers: &[],
        body: BodyRule::None,
        purpose: "the posters Plex has for an item (was an upload selected?)",
    },
    Route {
        method: Method::Get,
        path: "/library/metadata/{id}/arts",
        query: &[],
        headers: &[],
        body: BodyRule::None,
        purpose: "the backgrounds Plex has for an item",
    },
    Route {
        method: Method::Post,
        path: "/library/metadata/{id}/posters",
        query: &[],
        headers: &[],
        body: BodyRule::StashImage,
        purpose: "upload a poster from Stash",
    },
    Route {
        method: Method::Post,
        path: "/library/metadata/{id}/arts",
        query: &[],
        headers: &[],
        body: BodyRule::StashImage,
        purpose: "upload a background from Stash",
    },
    Route {
        method: Method::Put,
        path: "/library/metadata/{id}/poster",
        query: &["url=upload://posters/{hex}"],
        headers: &[],
        body: BodyRule::None,
        purpose: "select a poster uploaded before (never a URL Plex would fetch)",
    },
    Route {
        method: Method::Put,
        path: "/library/metadata/{id}/art",
        query: &["url=upload://arts/{hex}"],
        headers: &[],
        body: BodyRule::None,
        purpose: "select a background uploaded before",
    },
    Route {
        method: Method::Get,
        path: "/library/sections/{id}/refresh",
        query: &["path={text}"],
        headers: &[],
        body: BodyRule::None,
        purpose: "a partial scan of the folder of a file Plex does not have yet",
    },
    Route {
        method: Method::Get,
        path: "/activities",
        query: &[],
        headers: &[],
        body: BodyRule::None,
        purpose: "the scans still running",
    },
];

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Get => "GET",
        Method::Put => "PUT",
        Method::Post => "POST",
    }
}

fn is_key(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Does `value` fit the placeholder `{name}`?
fn fits(name: &str, value: &str) -> bool {
    if max_len(name).is_some_and(|max| value.len() > max) {
        return false;
    }
    match name {
        "id" => is_key(value),
        "ids" => value.split(',').count() <= MAX_IDS && value.split(',').all(is_key),
        "n" => value.bytes().all(|b| b.is_ascii_digit()),
        "hex" => value.len() == 40 && value.bytes().all(|b| b.is_ascii_hexdigit()),
        "field" => EDITABLE_FIELDS.contains(&value),
        "tag" => TAG_FIELDS.contains(&value),
        "text" => true,
        _ => false,
    }
}

/// Keys in one `{ids}`.
const MAX_IDS: usize = 50;

/// The longest text `{name}` can stand for; `None` = any length.
fn max_len(name: &str) -> Option<usize> {
    let longest = |words: &[&str]| words.iter().map(|w| w.len()).max().unwrap_or(0);
    match name {
        "id" => Some(64),
        "ids" => Some(MAX_IDS * 65 - 1),
        "n" => Some(4),
        "hex" => Some(40),
        "field" => Some(longest(EDITABLE_FIELDS)),
        "tag" => Some(longest(TAG_FIELDS)),
        "text" => None,
        _ => Some(0),
    }
}

/// Does `text` match `pattern` (literal text with `{id}`, `{n}` and
/// `{field}` placeholders)? Linear in the length of `text`: a policy's
/// path or parameter of any size is judged at once.
fn matches(pattern: &str, text: &str) -> bool {
    let Some(open) = pattern.find('{') else {
        return pattern == text;
    };
    let Some(close) = pattern[open..].find('}').map(|c| open + c) else {
        return pattern == text;
    };
    let (literal, placeholder, rest) = (&pattern[..open], &pattern[open + 1..close], &pattern[close + 1..]);
    let Some(text) = text.strip_prefix(literal) else {
        return false;
    };
    if !rest.contains('{') {
        // The rest is literal: only one split can fit.
        return text.strip_suffix(rest).is_some_and(|value| !value.is_empty() && fits(placeholder, value));
    }
    // Try every split of `text` the placeholder can stand for.
    let longest = max_len(placeholder).unwrap_or(text.len()).min(text.len());
    (1..=longest).filter(|&i| text.is_char_boundary(i)).any(|i| {
        let (value, tail) = text.split_at(i);
        fits(placeholder, value) && matches(rest, tail)
    })
}

/// The route `request` fits, or a sentence saying which rule refused it.
pub fn check(request: &Request) -> Result<&'static Route, String> {
    let method = method_name(request.method);
    let path = request.path.as_str();
    let shown: String = path.chars().take(120).collect();
    let by_path: Vec<&Route> = ROUTES.iter().filter(|r| matches(r.path, path)).collect();
    let Some(route) = by_path.iter().find(|r| r.method == request.method) else {
        return Err(if by_path.is_empty() {
            format!("{method} {shown} is not a request syncing needs (no rule allows the path {shown})")
        } else {
            let allowed: Vec<&str> = by_path.iter().map(|r| method_name(r.method)).collect();
            format!("{method} {shown} is not allowed: the rule for this path allows only {}", allowed.join(", "))
        });
    };
    for (key, value) in &request.query {
        let rules: Vec<(&str, Option<&str>)> =
            route.query.iter().map(|p| p.split_once('=').map_or((*p, None), |(k, v)| (k, Some(v)))).collect();
        let shown: String = key.chars().take(60).collect();
        let Some((_, value_rule)) = rules.iter().find(|(k, _)| matches(k, key)) else {
            return Err(format!("{method} {} may not carry the query parameter {shown:?}", route.path));
        };
        if let Some(rule) = value_rule
            && !matches(rule, value)
        {
            return Err(format!("{method} {}: the value of {shown:?} must be {rule}", route.path));
        }
    }
    for (name, _) in &request.headers {
        if !route.headers.iter().any(|h| h.eq_ignore_ascii_case(name)) {
            let name: String = name.chars().take(60).collect();
            return Err(format!("{method} {} may not set the header {name:?}", route.path));
        }
    }
    match (&request.body, route.body) {
        (Body::Empty, _) | (Body::StashImage(_), BodyRule::StashImage) => Ok(route),
        (Body::StashImage(_), BodyRule::None) => {
            Err(format!("{method} {} takes no body; a Stash image is only the body of an image upload", route.path))
        }
    }
}

#[cfg(test)]
#[path = "../fuzz/plex_requests.rs"]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    /// The WIT comments of `interface plex` list these routes, row for row,
    /// and the fields and tag lists: a route added here is documented there.
    #[test]
    fn the_wit_lists_every_route() {
        let wit = include_str!("../../../wit/since_v0.1.0/policy.wit");
        let dash = |v: &[&str]| if v.is_empty() { "-".to_string() } else { v.join(", ") };
        let rows: Vec<&str> = wit.lines().filter(|l| l.starts_with("/// | ") && !l.contains("| method |")).collect();
        assert_eq!(rows.len(), ROUTES.len(), "{rows:#?}");
        for r in ROUTES {
            let body = if r.body == BodyRule::StashImage { "stash-image" } else { "-" };
            let row = format!(
                "/// | {} | {} | {} | {} | {body} |",
                method_name(r.method),
                r.path,
                dash(r.query),
                dash(r.headers)
            );
            assert!(rows.contains(&row.as_str()), "the WIT lacks\n{row}");
        }
        let prose: String = wit.lines().map(|l| l.trim_start_matches("///").trim()).collect::<Vec<_>>().join(" ");
        assert!(prose.contains(&format!("`{{field}}` one of {}", EDITABLE_FIELDS.join(", "))), "fields");
        assert!(prose.contains(&format!("`{{tag}}` one of {}", TAG_FIELDS.join(", "))), "tag lists");
    }

    fn req(method: Method, path: &str, query: &[(&str, &str)]) -> Request {
        Request {
            method,
            path: path.into(),
            query: query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            headers: Vec::new(),
            body: Body::Empty,
            timeout_ms: None,
        }
    }

    #[test]
    fn the_requests_syncing_makes_are_allowed() {
        for r in [
            req(Method::Get, "/identity", &[]),
            req(Method::Get, "/library/sections", &[]),
            req(Method::Get, "/library/sections/3/all", &[("type", "1")]),
            req(Method::Get, "/library/metadata/108", &[]),
            req(
                Method::Put,
                "/library/sections/3/all",
                &[("type", "1"), ("id", "108"), ("title.value", "T"), ("title.locked", "1")],
            ),
            req(Method::Put, "/library/sections/3/all", &[("originallyAvailableAt.value", "2024-01-01")]),
        ] {
            assert!(check(&r).is_ok(), "{} {}: {:?}", method_name(r.method), r.path, check(&r).err());
        }
        let sha = "a".repeat(40);
        for r in [
            req(Method::Get, "/library/metadata/1,2,3", &[]),
            req(
                Method::Put,
                "/library/sections/3/all",
                &[("genre[0].tag.tag", "A"), ("genre[].tag.tag-", "B%2CC"), ("genre.locked", "1")],
            ),
            req(
                Method::Put,
                "/:/rate",
                &[("key", "108"), ("identifier", "com.plexapp.plugins.library"), ("rating", "8")],
            ),
            req(Method::Put, "/library/metadata/108/poster", &[("url", &format!("upload://posters/{sha}"))]),
            req(Method::Get, "/library/sections/3/refresh", &[("path", "/data/new")]),
            req(Method::Get, "/library/sections/3/all", &[("type", "1"), ("sort", "addedAt:desc")]),
            req(Method::Get, "/library/sections/3/all", &[("type", "1"), ("file", "/data/a.mkv")]),
            req(Method::Get, "/activities", &[]),
        ] {
            assert!(check(&r).is_ok(), "{} {}: {:?}", method_name(r.method), r.path, check(&r).err());
        }
        let mut upload = req(Method::Post, "/library/metadata/108/posters", &[]);
        upload.body = Body::StashImage("http://127.0.0.1:9999/scene/1/screenshot".into());
        assert!(check(&upload).is_ok());
        let mut paged = req(Method::Get, "/library/sections/3/all", &[("type", "4")]);
        paged.headers =
            vec![("x-plex-container-start".into(), "0".into()), ("X-Plex-Container-Size".into(), "200".into())];
        assert!(check(&paged).is_ok());
    }

    #[test]
    fn the_owners_api_is_refused_with_the_rule_that_refused_it() {
        let cases = [
            (
                req(Method::Get, "/security/token", &[("type", "delegation"), ("scope", "all")]),
                "no rule allows the path",
            ),
            (req(Method::Put, "/:/prefs", &[("allowMediaDeletion", "1")]), "no rule allows the path"),
            (
                req(Method::Post, "/library/metadata/1/posters", &[("url", "http://elsewhere/x")]),
                "may not carry the query parameter \"url\"",
            ),
            (
                req(Method::Put, "/library/metadata/1/poster", &[("url", "http://192.168.1.1/x")]),
                "must be upload://posters/{hex}",
            ),
            (
                req(Method::Put, "/:/rate", &[("key", "1"), ("identifier", "com.evil"), ("rating", "5")]),
                "must be com.plexapp.plugins.library",
            ),
            (req(Method::Put, "/library/metadata/108", &[]), "allows only GET"),
            (req(Method::Get, "/library/sections/3/all", &[("X-Plex-Token", "x")]), "query parameter \"X-Plex-Token\""),
            (req(Method::Put, "/library/sections/3/all", &[("thumb.value", "http://evil")]), "\"thumb.value\""),
            (req(Method::Get, "/library/metadata/../../security/token", &[]), "no rule allows"),
            (req(Method::Get, &format!("/library/metadata/{}", vec!["1"; 51].join(",")), &[]), "no rule allows"),
        ];
        for (r, expected) in cases {
            let err = check(&r).unwrap_err();
            assert!(err.contains(expected), "{} {}: {err}", method_name(r.method), r.path);
        }
        let mut r = req(Method::Get, "/identity", &[]);
        r.headers = vec![("X-Plex-Token".into(), "x".into())];
        assert!(check(&r).unwrap_err().contains("may not set the header"));
        let mut r = req(Method::Put, "/library/sections/3/all", &[("type", "1")]);
        r.body = Body::StashImage("http://127.0.0.1:9999/scene/1/screenshot".into());
        assert!(check(&r).unwrap_err().contains("takes no body"));
    }

    #[test]
    fn patterns() {
        assert!(matches("/library/metadata/{id}", "/library/metadata/a-B_9"));
        assert!(!matches("/library/metadata/{id}", "/library/metadata/"));
        assert!(!matches("/library/metadata/{id}", "/library/metadata/1/posters"));
        assert!(matches("{field}.value", "summary.value"));
        assert!(!matches("{field}.value", "thumb.value"));
        assert!(matches("genre[{n}].tag.tag", "genre[12].tag.tag"));
        assert!(!matches("genre[{n}].tag.tag", "genre[x].tag.tag"));
    }
}
