//! Error classification at the HTTP boundary: the one place that turns what
//! happened (a transport error, an HTTP status with its headers, a body that
//! did not parse, a match result, a Stash error) into an [`ErrorClass`].
//!
//! Everything downstream (retry profiles, the circuit breaker, the auth
//! pause, dead-letter grouping) keys off the class, never off raw statuses.
//!
//! | what happened | class | name |
//! |---|---|---|
//! | connection refused, DNS failure, TLS failure, other transport error | `PlexUnreachable(kind)` | `plex-unavailable` |
//! | connection reset mid-response | `PlexUnreachable(Reset)` | `plex-unavailable` |
//! | no answer within the deadline; HTTP 408 | `PlexSlow` | `plex-timeout` |
//! | 503 (starting up, database migrations) | `PlexStarting` | `plex-starting` |
//! | 429, 500, 502, 504, any other 5xx | `PlexOverloaded` | `plex-overloaded` |
//! | 401, 403 | `PlexUnauthorized` | `plex-unauthorized` |
//! | 404 on an item we know (`/library/metadata/{rk}`, its images, the edit, the rating) | `StaleItem` | `stale-item` |
//! | 404 on a section listing or scan | `StaleSection` | `stale-section` |
//! | 404 on `/library/sections`, `/identity` or `/activities`, any 3xx | `PlexWrongAddress` | `plex-wrong-address` |
//! | the file is in no Plex item (not scanned yet) | `NotInPlex` | `not-in-plex` |
//! | several Plex items have the file (strict matching) | `Ambiguous` | `ambiguous-match` |
//! | 400 and every other 4xx (our bug) | `BadRequest` | `plex-rejected-request` |
//! | the host refused to send the request (our bug) | `RequestRefused` | `request-refused-by-host` |
//! | a 2xx body that is not the JSON we expect, a 1xx, a body over the host's cap | `PlexMalformed` | `plex-malformed-response` |
//! | Stash unreachable or a GraphQL error | `StashUnavailable` | `stash-unavailable` |
//! | Stash refused the credentials | `StashUnauthorized` | `stash-unauthorized` |
//! | Stash answered something that is not the expected JSON | `StashMalformed` | `stash-malformed` |
//!
//! The names are stable: they are written to the dead-letter table and used
//! to re-queue dead letters by class. `Retry-After` (delta-seconds or an
//! HTTP-date) is read from every non-2xx answer and capped at
//! [`MAX_RETRY_AFTER_MS`].

use crate::host::{Describe, PlexResponse, StashError, TransportError};
use crate::text::clip;

/// The longest `Retry-After` honoured (a server asking for more is believed
/// for an hour, then asked again).
pub const MAX_RETRY_AFTER_MS: u64 = 3_600_000;

/// What a Plex request was for: the same status means different things on
/// different endpoints (a 404 on a known item is a stale index; on the
/// section list it means `plex_url` points somewhere else).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /identity`, the unauthenticated health probe.
    Identity,
    /// `GET /library/sections`.
    Sections,
    /// `GET /library/sections/{id}/all` (a listing page).
    Listing,
    /// `GET /library/metadata/{rk}` for a ratingKey we found earlier.
    Item,
    /// `PUT /library/sections/{id}/all?id={rk}` (the edit).
    Edit,
    /// `PUT /:/rate?key={rk}` (the user rating).
    Rate,
    /// `/library/metadata/{rk}/posters|arts|poster|art` (images).
    Image,
    /// `GET /library/sections/{id}/refresh?path=` (a partial scan).
    Scan,
    /// `GET /activities`.
    Activities,
}

/// Which transport failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    Refused,
    Reset,
    Dns,
    Tls,
    Other,
}

/// Every kind of failure the policy tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    PlexUnreachable(TransportKind),
    PlexSlow,
    PlexStarting,
    PlexOverloaded { status: u16 },
    PlexUnauthorized { status: u16 },
    StaleItem,
    StaleSection,
    PlexWrongAddress,
    NotInPlex,
    Ambiguous,
    BadRequest { status: u16 },
    RequestRefused,
    PlexMalformed,
    StashUnavailable,
    StashUnauthorized,
    StashMalformed,
}

/// Every class name (the tests check `ErrorClass::name` against it).
#[cfg(test)]
pub const CLASS_NAMES: &[&str] = &[
    "plex-unavailable",
    "plex-timeout",
    "plex-starting",
    "plex-overloaded",
    "plex-unauthorized",
    "stale-item",
    "stale-section",
    "plex-wrong-address",
    "not-in-plex",
    "ambiguous-match",
    "plex-rejected-request",
    "request-refused-by-host",
    "plex-malformed-response",
    "stash-unavailable",
    "stash-unauthorized",
    "stash-malformed",
];

impl ErrorClass {
    /// The stable kebab-case name (dead-letter `error-class`, `retry-at`
    /// error prefix).
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::PlexUnreachable(_) => "plex-unavailable",
            ErrorClass::PlexSlow => "plex-timeout",
            ErrorClass::PlexStarting => "plex-starting",
            ErrorClass::PlexOverloaded { .. } => "plex-overloaded",
            ErrorClass::PlexUnauthorized { .. } => "plex-unauthorized",
            ErrorClass::StaleItem => "stale-item",
            ErrorClass::StaleSection => "stale-section",
            ErrorClass::PlexWrongAddress => "plex-wrong-address",
            ErrorClass::NotInPlex => "not-in-plex",
            ErrorClass::Ambiguous => "ambiguous-match",
            ErrorClass::BadRequest { .. } => "plex-rejected-request",
            ErrorClass::RequestRefused => "request-refused-by-host",
            ErrorClass::PlexMalformed => "plex-malformed-response",
            ErrorClass::StashUnavailable => "stash-unavailable",
            ErrorClass::StashUnauthorized => "stash-unauthorized",
            ErrorClass::StashMalformed => "stash-malformed",
        }
    }

    /// Whether a failure of this class says something about Plex's health
    /// (and so counts toward the circuit breaker). Item-level answers (not
    /// found, ambiguous, stale), our own bugs (400, refused by the host),
    /// credentials (they have their own pause) and Stash never do.
    pub fn counts_for_breaker(self) -> bool {
        matches!(
            self,
            ErrorClass::PlexUnreachable(_)
                | ErrorClass::PlexSlow
                | ErrorClass::PlexStarting
                | ErrorClass::PlexOverloaded { .. }
                | ErrorClass::PlexWrongAddress
                | ErrorClass::PlexMalformed
        )
    }
}

/// A classified failure: the class, a one-line message for users, and the
/// server's `Retry-After` hint if it sent one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    pub class: ErrorClass,
    pub message: String,
    pub retry_after_ms: Option<u64>,
}

impl Classified {
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        Classified { class, message: message.into(), retry_after_ms: None }
    }
}

/// Classify an answer from Plex. `None` means success (2xx). `what` names
/// the request for messages (`GET /library/sections`).
pub fn response(endpoint: Endpoint, response: &PlexResponse, what: &str, now_ms: i64) -> Option<Classified> {
    let status = response.status;
    if (200..300).contains(&status) {
        return None;
    }
    let retry_after_ms = header(response, "retry-after").and_then(|v| retry_after_ms(v, now_ms));
    let (class, message) = match status {
        401 => (
            ErrorClass::PlexUnauthorized { status },
            format!("Plex rejected the token (HTTP 401 on {what}); check plex_token in the plugin settings"),
        ),
        403 => (
            ErrorClass::PlexUnauthorized { status },
            format!("Plex refused this token access (HTTP 403 on {what}); use the server owner's token as plex_token"),
        ),
        404 => match endpoint {
            Endpoint::Item | Endpoint::Edit | Endpoint::Rate | Endpoint::Image => {
                (ErrorClass::StaleItem, format!("Plex no longer has this item (404 on {what})"))
            }
            Endpoint::Listing | Endpoint::Scan => {
                (ErrorClass::StaleSection, format!("Plex library section at {what} no longer exists (404)"))
            }
            Endpoint::Sections | Endpoint::Identity | Endpoint::Activities => (
                ErrorClass::PlexWrongAddress,
                format!("Plex answered 404 on {what}; check that plex_url points at the Plex server"),
            ),
        },
        408 => (ErrorClass::PlexSlow, format!("Plex timed out reading the request (408 on {what})")),
        429 => (ErrorClass::PlexOverloaded { status }, format!("Plex is overloaded (429 Too Many Requests on {what})")),
        503 => (
            ErrorClass::PlexStarting,
            format!("Plex answered 503 on {what} (starting up or running database migrations)"),
        ),
        500..=599 => (ErrorClass::PlexOverloaded { status }, format!("Plex answered {status} on {what}")),
        300..=399 => {
            let to = header(response, "location").map(|l| format!(" to {}", clip(l, 200))).unwrap_or_default();
            (
                ErrorClass::PlexWrongAddress,
                format!("Plex answered with a redirect ({status}{to}) on {what}; check plex_url (http or https?)"),
            )
        }
        400 => (ErrorClass::BadRequest { status }, format!("Plex rejected the request as invalid (400 on {what})")),
        402..=499 => (ErrorClass::BadRequest { status }, format!("Plex refused the request ({status} on {what})")),
        _ => (ErrorClass::PlexMalformed, format!("Plex answered with unexpected status {status} on {what}")),
    };
    Some(Classified { class, message, retry_after_ms })
}

/// Classify a failure to get any answer.
pub fn transport(error: &TransportError) -> Classified {
    let text = clip(&error.describe(), 300);
    let class = match error {
        TransportError::Refused(_) => ErrorClass::PlexUnreachable(TransportKind::Refused),
        TransportError::Reset(_) => ErrorClass::PlexUnreachable(TransportKind::Reset),
        TransportError::Dns(_) => ErrorClass::PlexUnreachable(TransportKind::Dns),
        TransportError::Tls(_) => ErrorClass::PlexUnreachable(TransportKind::Tls),
        TransportError::Other(_) => ErrorClass::PlexUnreachable(TransportKind::Other),
        TransportError::Timeout(_) => ErrorClass::PlexSlow,
        TransportError::TooLarge(_) => {
            return Classified::new(ErrorClass::PlexMalformed, format!("Plex sent too much: {text}"));
        }
        TransportError::InvalidRequest(_) => {
            return Classified::new(ErrorClass::RequestRefused, format!("the request was not sent: {text}"));
        }
    };
    Classified::new(class, format!("Plex could not be reached: {text}"))
}

/// Classify a 2xx answer whose body could not be read.
pub fn malformed(what: &str, error: &str) -> Classified {
    Classified::new(
        ErrorClass::PlexMalformed,
        format!("Plex sent an unexpected answer to {what}: {}", clip(error, 300)),
    )
}

/// Classify a failed Stash look-up.
pub fn stash(error: &StashError) -> Classified {
    match error {
        StashError::Unauthorized(m) => Classified::new(
            ErrorClass::StashUnauthorized,
            format!("Stash rejected the plugin's credentials ({})", clip(m, 200)),
        ),
        StashError::Unreachable(m) | StashError::Graphql(m) => {
            Classified::new(ErrorClass::StashUnavailable, format!("Stash could not answer ({})", clip(m, 200)))
        }
        StashError::Malformed(m) => {
            Classified::new(ErrorClass::StashMalformed, format!("Stash sent an unexpected answer ({})", clip(m, 200)))
        }
    }
}

/// The file is in no Plex item (yet).
pub fn not_in_plex(message: impl Into<String>) -> Classified {
    Classified::new(ErrorClass::NotInPlex, message)
}

/// Several Plex items have the file and strict matching refuses to guess.
pub fn ambiguous(message: impl Into<String>) -> Classified {
    Classified::new(ErrorClass::Ambiguous, message)
}

fn header<'a>(response: &'a PlexResponse, name: &str) -> Option<&'a str> {
    response.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// `Retry-After` as a delay from `now_ms`: delta-seconds or an HTTP-date
/// (IMF-fixdate, RFC 850 or asctime), capped at [`MAX_RETRY_AFTER_MS`]. A
/// date in the past is 0; anything unreadable is `None`.
pub fn retry_after_ms(value: &str, now_ms: i64) -> Option<u64> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = value.parse().unwrap_or(u64::MAX);
        return Some(secs.saturating_mul(1000).min(MAX_RETRY_AFTER_MS));
    }
    let at = crate::calendar::http_date_ms(value)?;
    let delta = at.saturating_sub(now_ms).max(0);
    Some(u64::try_from(delta).unwrap_or(0).min(MAX_RETRY_AFTER_MS))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000; // 2023-11-14 22:13:20 UTC

    fn resp(status: u16, headers: &[(&str, &str)], body: &str) -> PlexResponse {
        PlexResponse {
            status,
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: body.as_bytes().to_vec(),
            elapsed_ms: 5,
        }
    }

    fn class_of(endpoint: Endpoint, status: u16, headers: &[(&str, &str)]) -> Option<(ErrorClass, Option<u64>)> {
        response(endpoint, &resp(status, headers, ""), "GET /x", NOW).map(|c| (c.class, c.retry_after_ms))
    }

    #[test]
    fn every_http_status_class() {
        use ErrorClass::*;
        let date_in_90s = "Tue, 14 Nov 2023 22:14:50 GMT";
        type Row<'a> = (Endpoint, u16, Vec<(&'a str, &'a str)>, Option<(ErrorClass, Option<u64>)>);
        let table: Vec<Row> = vec![
            (Endpoint::Edit, 200, vec![], None),
            (Endpoint::Edit, 201, vec![], None),
            (Endpoint::Edit, 204, vec![], None),
            (Endpoint::Sections, 503, vec![], Some((PlexStarting, None))),
            (Endpoint::Sections, 503, vec![("retry-after", "30")], Some((PlexStarting, Some(30_000)))),
            (Endpoint::Sections, 503, vec![("Retry-After", date_in_90s)], Some((PlexStarting, Some(90_000)))),
            (Endpoint::Edit, 429, vec![("retry-after", "120")], Some((PlexOverloaded { status: 429 }, Some(120_000)))),
            (Endpoint::Edit, 429, vec![], Some((PlexOverloaded { status: 429 }, None))),
            (Endpoint::Item, 500, vec![], Some((PlexOverloaded { status: 500 }, None))),
            (Endpoint::Item, 502, vec![], Some((PlexOverloaded { status: 502 }, None))),
            (Endpoint::Item, 504, vec![], Some((PlexOverloaded { status: 504 }, None))),
            (Endpoint::Item, 599, vec![], Some((PlexOverloaded { status: 599 }, None))),
            (Endpoint::Item, 401, vec![], Some((PlexUnauthorized { status: 401 }, None))),
            (Endpoint::Sections, 403, vec![], Some((PlexUnauthorized { status: 403 }, None))),
            (Endpoint::Item, 404, vec![], Some((StaleItem, None))),
            (Endpoint::Edit, 404, vec![], Some((StaleItem, None))),
            (Endpoint::Listing, 404, vec![], Some((StaleSection, None))),
            (Endpoint::Sections, 404, vec![], Some((PlexWrongAddress, None))),
            (Endpoint::Identity, 404, vec![], Some((PlexWrongAddress, None))),
            (Endpoint::Sections, 301, vec![("location", "https://plex/")], Some((PlexWrongAddress, None))),
            (Endpoint::Edit, 400, vec![], Some((BadRequest { status: 400 }, None))),
            (Endpoint::Edit, 418, vec![], Some((BadRequest { status: 418 }, None))),
            (Endpoint::Edit, 414, vec![], Some((BadRequest { status: 414 }, None))),
            (Endpoint::Edit, 408, vec![], Some((PlexSlow, None))),
            (Endpoint::Edit, 102, vec![], Some((PlexMalformed, None))),
        ];
        for (endpoint, status, headers, want) in table {
            assert_eq!(class_of(endpoint, status, &headers), want, "{endpoint:?} {status} {headers:?}");
        }
    }

    #[test]
    fn every_transport_kind() {
        use ErrorClass::*;
        let table = [
            (TransportError::Refused("x".into()), PlexUnreachable(TransportKind::Refused)),
            (TransportError::Reset("x".into()), PlexUnreachable(TransportKind::Reset)),
            (TransportError::Dns("x".into()), PlexUnreachable(TransportKind::Dns)),
            (TransportError::Tls("x".into()), PlexUnreachable(TransportKind::Tls)),
            (TransportError::Other("x".into()), PlexUnreachable(TransportKind::Other)),
            (TransportError::Timeout("x".into()), PlexSlow),
            (TransportError::TooLarge(64), PlexMalformed),
            (TransportError::InvalidRequest("x".into()), RequestRefused),
        ];
        for (error, want) in table {
            let c = transport(&error);
            assert_eq!(c.class, want, "{error:?}");
            assert_eq!(c.retry_after_ms, None);
        }
        let c = transport(&TransportError::Refused("127.0.0.1:32400".into()));
        assert_eq!(c.message, "Plex could not be reached: connection refused (127.0.0.1:32400)");
    }

    #[test]
    fn parse_failures_matches_and_stash() {
        assert_eq!(malformed("GET /x", "expected value at line 1").class, ErrorClass::PlexMalformed);
        assert_eq!(not_in_plex("m").class, ErrorClass::NotInPlex);
        assert_eq!(ambiguous("m").class, ErrorClass::Ambiguous);
        assert_eq!(stash(&StashError::Unreachable("x".into())).class, ErrorClass::StashUnavailable);
        assert_eq!(stash(&StashError::Graphql("database is locked".into())).class, ErrorClass::StashUnavailable);
        assert_eq!(stash(&StashError::Unauthorized("401".into())).class, ErrorClass::StashUnauthorized);
        assert_eq!(stash(&StashError::Malformed("x".into())).class, ErrorClass::StashMalformed);
    }

    #[test]
    fn breaker_counting_classes() {
        use ErrorClass::*;
        let counted = [
            PlexUnreachable(TransportKind::Refused),
            PlexUnreachable(TransportKind::Reset),
            PlexSlow,
            PlexStarting,
            PlexOverloaded { status: 429 },
            PlexWrongAddress,
            PlexMalformed,
        ];
        let ignored = [
            PlexUnauthorized { status: 401 },
            StaleItem,
            StaleSection,
            NotInPlex,
            Ambiguous,
            BadRequest { status: 400 },
            RequestRefused,
            StashUnavailable,
            StashUnauthorized,
            StashMalformed,
        ];
        assert!(counted.iter().all(|c| c.counts_for_breaker()));
        assert!(ignored.iter().all(|c| !c.counts_for_breaker()));
        // Every name is listed once and is kebab-case.
        let mut names: Vec<&str> = counted.iter().chain(ignored.iter()).map(|c| c.name()).collect();
        names.sort_unstable();
        names.dedup();
        let mut listed = CLASS_NAMES.to_vec();
        listed.sort_unstable();
        assert_eq!(names, listed);
        assert!(CLASS_NAMES.iter().all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '-')));
    }

    #[test]
    fn retry_after_forms_and_caps() {
        assert_eq!(retry_after_ms("120", NOW), Some(120_000));
        assert_eq!(retry_after_ms(" 0 ", NOW), Some(0));
        assert_eq!(retry_after_ms("999999999999999999999", NOW), Some(MAX_RETRY_AFTER_MS));
        assert_eq!(retry_after_ms("7200", NOW), Some(MAX_RETRY_AFTER_MS));
        // The three HTTP-date forms of the same instant, 90 s after NOW.
        for date in ["Tue, 14 Nov 2023 22:14:50 GMT", "Tuesday, 14-Nov-23 22:14:50 GMT", "Tue Nov 14 22:14:50 2023"] {
            assert_eq!(retry_after_ms(date, NOW), Some(90_000), "{date}");
        }
        // In the past: now.
        assert_eq!(retry_after_ms("Sun, 06 Nov 1994 08:49:37 GMT", NOW), Some(0));
        for bad in ["", "-5", "1.5", "soon", "Tue, 32 Nov 2023 22:14:50 GMT", "Tue, 14 Foo 2023 22:14:50 GMT"] {
            assert_eq!(retry_after_ms(bad, NOW), None, "{bad:?}");
        }
    }
}
