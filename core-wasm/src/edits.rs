//! The diff: the scene's desired state (`desired`) against the full Plex
//! item, as ONE `PUT /library/sections/{sid}/all?type=…&id=…` carrying every
//! change, each with its lock so a Plex agent refresh does not revert it:
//!
//! - a one-value field: `<field>.value=<v>&<field>.locked=1` when the value
//!   differs or the field is not locked yet;
//! - a tag list (actors, genres, collections, labels): when the names
//!   differ (compared case-insensitively, as sets) or the list is not
//!   locked, the full desired list in Stash's order,
//!   `<tag>[i].tag.tag=<name>`, the names Plex has and Stash does not,
//!   `<tag>[].tag.tag-=<name,name>` (each name percent-encoded, then the
//!   whole value encoded again by the host: Plex's removal encoding), and
//!   `<tag>.locked=1`;
//! - the user rating goes separately (`PUT /:/rate`), only when it changed.
//!
//! `preserve_plex_edits` writes a field or list only when Plex's is empty;
//! a scene without meaningful metadata (`Desired::meaningful`) never clears
//! a field, never removes a tag and never clears the rating.

use std::collections::BTreeSet;

use crate::desired::{Desired, ListKind, Rating, Scalar};
use crate::plex_json::PlexItem;

/// Stash's rating and Plex's are equal within this.
const RATING_EPSILON: f64 = 0.05;

/// One change that was sent, for the read-back check.
#[derive(Debug, Clone, PartialEq)]
pub enum Sent {
    Scalar(Scalar, String),
    List(ListKind, Vec<String>),
    Rating(Rating),
}

impl Sent {
    pub fn name(&self) -> &'static str {
        match self {
            Sent::Scalar(s, _) => s.plex_name(),
            Sent::List(l, _) => l.plex_name(),
            Sent::Rating(_) => "userRating",
        }
    }
}

/// What to send for one scene.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EditPlan {
    /// The PUT's query: `type`, `id`, then every change; empty when nothing
    /// needs writing.
    pub query: Vec<(String, String)>,
    /// The `rating` value for `PUT /:/rate`, when the rating changes
    /// (`-1` clears it).
    pub rating: Option<String>,
    /// Every change, in order.
    pub sent: Vec<Sent>,
}

impl EditPlan {
    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    /// The names of the changed fields, for the log.
    pub fn changed_names(&self) -> Vec<&'static str> {
        self.sent.iter().map(Sent::name).collect()
    }
}

/// The current value of a one-value field (`""` when Plex has none).
pub fn current_scalar(item: &PlexItem, s: Scalar) -> &str {
    let value = match s {
        Scalar::Title => &item.title,
        Scalar::TitleSort => &item.title_sort,
        Scalar::Summary => &item.summary,
        Scalar::Tagline => &item.tagline,
        Scalar::OriginallyAvailableAt => &item.originally_available_at,
        Scalar::Studio => &item.studio,
        Scalar::ContentRating => &item.content_rating,
    };
    let value = value.as_deref().unwrap_or("");
    match s {
        // Plex returns `YYYY-MM-DD`; tolerate a time part.
        Scalar::OriginallyAvailableAt if value.len() > 10 && value.is_char_boundary(10) => &value[..10],
        _ => value,
    }
}

pub fn current_list(item: &PlexItem, l: ListKind) -> &[String] {
    match l {
        ListKind::Actor => &item.actors,
        ListKind::Genre => &item.genres,
        ListKind::Collection => &item.collections,
        ListKind::Label => &item.labels,
    }
}

fn folded(names: &[String]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_lowercase()).collect()
}

/// Whether two tag lists hold the same names (case-insensitively).
pub fn same_names(a: &[String], b: &[String]) -> bool {
    folded(a) == folded(b)
}

/// `rating` as Plex's `/:/rate` takes it: one decimal, `-1` to clear.
pub fn rating_value(rating: Rating) -> String {
    match rating {
        None => "-1".to_string(),
        Some(r) if r.fract() == 0.0 => format!("{r:.0}"),
        Some(r) => format!("{r:.1}"),
    }
}

fn rating_equal(a: Option<f64>, b: Rating) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => (x - y).abs() < RATING_EPSILON,
        _ => false,
    }
}

/// One name of a removal list, percent-encoded (RFC 3986 unreserved kept).
fn encode_name(name: &str) -> String {
    const SET: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    percent_encoding::utf8_percent_encode(name, SET).to_string()
}

/// Compare `want` with `item` and build the PUT (and the rating).
pub fn plan(want: &Desired, item: &PlexItem, preserve: bool, plex_type: u8, rating_key: &str) -> EditPlan {
    let may_clear = want.meaningful && !preserve;
    let mut plan = EditPlan::default();
    let mut pairs: Vec<(String, String)> = Vec::new();

    for (field, value) in &want.scalars {
        let name = field.plex_name();
        let current = current_scalar(item, *field);
        if value.is_empty() && !may_clear {
            continue;
        }
        if preserve && !current.is_empty() {
            continue;
        }
        if value != current || !item.locked.contains(name) {
            pairs.push((format!("{name}.value"), value.clone()));
            pairs.push((format!("{name}.locked"), "1".into()));
            plan.sent.push(Sent::Scalar(*field, value.clone()));
        }
    }

    for (kind, names) in &want.lists {
        let name = kind.plex_name();
        let current = current_list(item, *kind);
        if preserve && !current.is_empty() {
            continue;
        }
        if names.is_empty() && !may_clear {
            continue;
        }
        let mut wanted = names.clone();
        if !may_clear {
            // Never remove anything: keep what Plex has after Stash's names.
            for c in current {
                if !wanted.iter().any(|w| w.to_lowercase() == c.to_lowercase()) {
                    wanted.push(c.clone());
                }
            }
        }
        let equal = same_names(&wanted, current);
        let locked = item.locked.contains(name);
        if equal && locked {
            continue;
        }
        if !equal {
            for (i, n) in wanted.iter().enumerate() {
                pairs.push((format!("{name}[{i}].tag.tag"), n.clone()));
            }
            let keep = folded(&wanted);
            let gone: Vec<String> =
                current.iter().filter(|c| !keep.contains(&c.to_lowercase())).map(|c| encode_name(c)).collect();
            if !gone.is_empty() {
                pairs.push((format!("{name}[].tag.tag-"), gone.join(",")));
            }
        }
        pairs.push((format!("{name}.locked"), "1".into()));
        plan.sent.push(Sent::List(*kind, wanted));
    }

    if let Some(rating) = want.rating {
        let skip = (rating.is_none() && !may_clear) || (preserve && item.user_rating.is_some());
        if !skip && !rating_equal(item.user_rating, rating) {
            plan.rating = Some(rating_value(rating));
            plan.sent.push(Sent::Rating(rating));
        }
    }

    if !pairs.is_empty() {
        plan.query.push(("type".into(), plex_type.to_string()));
        plan.query.push(("id".into(), rating_key.to_string()));
        plan.query.extend(pairs);
    }
    plan
}

/// One field where Plex differs from the desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The Plex field name (`title`, `genre`, `userRating`, ...).
    pub field: &'static str,
    pub plex: String,
    pub stash: String,
}

/// The fields [`plan`] would change, judged from a section *listing*
/// entry (reconciliation): the same desired state and the same rules
/// (`preserve_plex_edits`, never clearing without meaningful metadata), but
/// locks are not compared (listings carry no `Field`) and, because Plex
/// truncates tag lists in listings, a list differs only when the listing
/// proves it: Plex shows a name the desired list does not have, or none
/// while names are wanted.
pub fn differences(want: &Desired, item: &PlexItem, preserve: bool) -> Vec<Difference> {
    let may_clear = want.meaningful && !preserve;
    let mut out = Vec::new();
    for (field, value) in &want.scalars {
        let current = current_scalar(item, *field);
        if (value.is_empty() && !may_clear) || (preserve && !current.is_empty()) {
            continue;
        }
        if value != current {
            out.push(Difference { field: field.plex_name(), plex: current.to_string(), stash: value.clone() });
        }
    }
    for (kind, names) in &want.lists {
        let current = current_list(item, *kind);
        if (preserve && !current.is_empty()) || (names.is_empty() && !may_clear) {
            continue;
        }
        let keep = folded(names);
        let extra = may_clear && current.iter().any(|c| !keep.contains(&c.to_lowercase()));
        if extra || (current.is_empty() && !names.is_empty()) {
            out.push(Difference { field: kind.plex_name(), plex: current.join(", "), stash: names.join(", ") });
        }
    }
    if let Some(rating) = want.rating {
        let skip = (rating.is_none() && !may_clear) || (preserve && item.user_rating.is_some());
        if !skip && !rating_equal(item.user_rating, rating) {
            let shown = |r: Option<f64>| r.map(|v| rating_value(Some(v))).unwrap_or_default();
            out.push(Difference { field: "userRating", plex: shown(item.user_rating), stash: shown(rating) });
        }
    }
    out
}

/// The changes that the item read back after the write does not show
/// (empty = verified).
pub fn drifted(sent: &[Sent], item: &PlexItem) -> Vec<&'static str> {
    sent.iter()
        .filter(|s| match s {
            Sent::Scalar(f, v) => current_scalar(item, *f) != v || !item.locked.contains(f.plex_name()),
            Sent::List(l, names) => !same_names(current_list(item, *l), names) || !item.locked.contains(l.plex_name()),
            Sent::Rating(r) => !rating_equal(item.user_rating, *r),
        })
        .map(Sent::name)
        .collect()
}

#[cfg(test)]
mod tests;
