//! Poster and background from the scene's screenshot, uploaded only when
//! the image changed.
//!
//! Plex keeps every uploaded image forever (there is no delete) and names
//! an upload by the SHA-1 of its bytes (`upload://posters/<sha1>`). So per
//! scene the policy state keeps the Plex item, and per slot the Stash URL
//! and the SHA-1 last put there. The records are kept in [`SHARDS`] state
//! keys (`img-shard/<n>`, a scene's by a hash of its id), not one key per
//! scene: the host keeps at most 1,000 keys per policy, and a library is
//! often larger. (Records of older versions, `img/<scene id>`, are read and
//! moved into their shard.) For each image:
//!
//! 1. same URL as last time → nothing to do (no request at all);
//! 2. else the host digests the Stash image (`stash.image-digest`); same
//!    SHA-1 → only the URL is remembered;
//! 3. the first time for this item: `GET …/posters`; an upload with that
//!    SHA-1 already there is selected (`PUT …/poster?url=`) instead of
//!    uploaded again;
//! 4. else `POST …/posters` with the image, then `GET …/posters` checks that
//!    `upload://posters/<sha1>` is there and selected (verified).
//!
//! `preserve_plex_edits` keeps an image someone chose in Plex (its field is
//! locked and the policy never put an image there).

use serde::{Deserialize, Serialize};

use super::{DrainState, Failure, JobRun, malformed};
use crate::classify::{self, Endpoint};
use crate::desired::{Desired, ImageKind};
use crate::host::{Body, Describe, LogLevel, Method, PlexRequest, Scene, StashError};
use crate::plex_json::{self, ImageEntry, PlexItem};
use crate::text::clip;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Slot {
    url: String,
    sha1: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    rk: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    poster: Option<Slot>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    background: Option<Slot>,
}

impl Record {
    fn slot(&mut self, kind: ImageKind) -> &mut Option<Slot> {
        match kind {
            ImageKind::Poster => &mut self.poster,
            ImageKind::Background => &mut self.background,
        }
    }
}

/// What happened to the images of one scene.
#[derive(Debug, Default)]
pub struct Pictures {
    /// `poster`, `background` when Plex got a new one.
    pub changed: Vec<&'static str>,
    /// For the log line.
    pub notes: Vec<String>,
}

/// State keys the image records are spread over. 512 of 256 KiB hold the
/// records of about half a million scenes; past that, a full shard is not
/// written and its new scenes' images are looked up in Plex again (one
/// request more per image), nothing worse.
const SHARDS: u32 = 512;

/// The largest shard written (the host refuses a state value over 256 KiB).
const MAX_SHARD_BYTES: usize = 250 << 10;

/// The records of the scenes in one shard, by scene id.
type Shard = std::collections::BTreeMap<String, Record>;

/// The state key of the shard holding `scene_id`'s record: FNV-1a of the
/// id, so the same id always lands in the same shard.
pub(crate) fn shard_key(scene_id: &str) -> String {
    let hash = scene_id.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    format!("img-shard/{}", hash % SHARDS)
}

/// Where an older version kept one scene's record.
fn legacy_key(scene_id: &str) -> String {
    format!("img/{scene_id}")
}

/// A scene's record and its shard, as stored (a shard that does not parse
/// is started again: the records are a cache of what Plex has).
struct Stored {
    shard_key: String,
    shard: Shard,
    record: Option<Record>,
    /// The record came from its old per-scene key, to be moved.
    legacy: bool,
}

fn load(run: &JobRun<'_>, scene_id: &str) -> Stored {
    let read = |key: &str| run.host.state_get(key).ok().flatten();
    let shard_key = shard_key(scene_id);
    let shard: Shard = read(&shard_key).and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
    let mut record = shard.get(scene_id).cloned();
    let mut legacy = false;
    if record.is_none() {
        record = read(&legacy_key(scene_id)).and_then(|t| serde_json::from_str(&t).ok());
        legacy = record.is_some();
    }
    Stored { shard_key, shard, record, legacy }
}

/// Keep `record` for the scene (in its shard, the old key removed).
fn save(run: &mut JobRun<'_>, scene_id: &str, mut stored: Stored, record: Record) {
    if stored.record.as_ref() == Some(&record) && !stored.legacy {
        return;
    }
    stored.shard.insert(scene_id.to_string(), record);
    match serde_json::to_string(&stored.shard) {
        Ok(text) if text.len() <= MAX_SHARD_BYTES => run.write(&stored.shard_key, Some(text)),
        _ => {
            run.host.log(
                LogLevel::Debug,
                &format!(
                    "{}: the image records' shard {} is full; the record is not kept",
                    run.who(),
                    stored.shard_key
                ),
            );
            return;
        }
    }
    if stored.legacy {
        run.write(&legacy_key(scene_id), None);
    }
}

pub fn sync(
    _state: &mut DrainState,
    run: &mut JobRun<'_>,
    scene: &Scene,
    want: &Desired,
    item: &PlexItem,
    rating_key: &str,
) -> Result<Pictures, Failure> {
    let mut out = Pictures::default();
    if want.images.is_empty() {
        return Ok(out);
    }
    let stored = load(run, &scene.id);
    let mut record = stored
        .record
        .clone()
        .filter(|r| r.rk == rating_key)
        .unwrap_or_else(|| Record { rk: rating_key.to_string(), ..Record::default() });
    let known_item = stored.record.as_ref().is_some_and(|r| r.rk == rating_key);

    for (kind, url) in &want.images {
        let kind = *kind;
        let previous = record.slot(kind).clone();
        if previous.as_ref().is_some_and(|s| &s.url == url) {
            continue;
        }
        let digest = match run.host.image_digest(url) {
            Ok(d) => d,
            // Stash is away: the job waits for it like for Plex (no attempt
            // is used), rather than finishing without its image.
            Err(e @ StashError::Unreachable(_)) => return Err(Failure::Class(classify::stash(&e))),
            Err(e) => {
                out.notes.push(format!(
                    "{} not synced: the Stash image could not be read ({})",
                    kind.name(),
                    clip(&e.describe(), 200)
                ));
                continue;
            }
        };
        if previous.as_ref().is_some_and(|s| s.sha1 == digest.sha1) {
            *record.slot(kind) = Some(Slot { url: url.clone(), sha1: digest.sha1 });
            continue;
        }
        if run.settings.preserve_plex_edits && previous.is_none() && item.locked.contains(kind.field()) {
            out.notes.push(format!("{} kept: it was chosen in Plex (preserve_plex_edits)", kind.name()));
            continue;
        }
        let wanted = |e: &ImageEntry| {
            e.rating_key.starts_with("upload://") && e.rating_key.ends_with(&format!("/{}", digest.sha1))
        };
        if !known_item || previous.is_none() {
            let list = list_images(run, rating_key, kind)?;
            if let Some(entry) = list.iter().find(|e| wanted(e)) {
                if !entry.selected {
                    let mut select =
                        PlexRequest::new(Method::Put, format!("/library/metadata/{rating_key}/{}", kind.select()));
                    select.query.push(("url".into(), entry.rating_key.clone()));
                    run.send(Endpoint::Image, &select)?;
                    out.changed.push(kind.name());
                    out.notes.push(format!("{} already in Plex, selected again (not uploaded twice)", kind.name()));
                }
                *record.slot(kind) = Some(Slot { url: url.clone(), sha1: digest.sha1 });
                continue;
            }
        }
        let mut upload =
            PlexRequest::new(Method::Post, format!("/library/metadata/{rating_key}/{}", kind.collection()));
        upload.body = Body::StashImage(url.clone());
        run.send(Endpoint::Image, &upload)?;
        out.changed.push(kind.name());
        let after = list_images(run, rating_key, kind)?;
        let verified = after.iter().any(|e| wanted(e) && e.selected);
        if verified {
            out.notes.push(format!("{} uploaded and verified", kind.name()));
        } else {
            run.host.log(
                LogLevel::Warn,
                &format!(
                    "{}: the {} was uploaded but Plex does not show upload …/{} as selected yet (drifted)",
                    run.who(),
                    kind.name(),
                    digest.sha1
                ),
            );
            out.notes.push(format!("{} uploaded, not confirmed by Plex", kind.name()));
        }
        *record.slot(kind) = Some(Slot { url: url.clone(), sha1: digest.sha1 });
    }
    save(run, &scene.id, stored, record);
    Ok(out)
}

fn list_images(run: &mut JobRun<'_>, rating_key: &str, kind: ImageKind) -> Result<Vec<ImageEntry>, Failure> {
    let request = PlexRequest::get(format!("/library/metadata/{rating_key}/{}", kind.collection()));
    let response = run.send(Endpoint::Image, &request)?;
    plex_json::parse_images(&response.body).map_err(|e| malformed(&request, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scene_keeps_its_shard_and_a_large_library_fits_in_them() {
        assert_eq!(shard_key("12"), shard_key("12"));
        assert_ne!(shard_key("12"), legacy_key("12"));
        let mut per_shard: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for id in 1..=100_000 {
            *per_shard.entry(shard_key(&id.to_string())).or_default() += 1;
        }
        assert_eq!(per_shard.len(), SHARDS as usize, "every shard is used");
        // A record with two long Stash URLs and SHA-1s, as JSON in a shard.
        let url = format!("http://stash.example.lan:9999/scene/100000/screenshot?t={}", u64::MAX);
        let slot = Slot { url, sha1: "f".repeat(40) };
        let record = Record { rk: "1234567".into(), poster: Some(slot.clone()), background: Some(slot) };
        let one = serde_json::to_string(&Shard::from([("100000".to_string(), record)])).unwrap_or_default().len();
        let fullest = per_shard.values().copied().max().unwrap_or(0);
        assert!(fullest * one < MAX_SHARD_BYTES, "{fullest} records of {one} bytes fit in a shard");
    }
}
