//! Poster and background from the scene's screenshot, uploaded only when
//! the image changed.
//!
//! Plex keeps every uploaded image forever (there is no delete) and names
//! an upload by the SHA-1 of its bytes (`upload://posters/<sha1>`). So per
//! scene the policy state keeps, under `img/<scene id>`, the Plex item, and
//! per slot the Stash URL and the SHA-1 last put there:
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

pub fn state_key(scene_id: &str) -> String {
    format!("img/{scene_id}")
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
    let key = state_key(&scene.id);
    let stored: Option<Record> = run.host.state_get(&key).ok().flatten().and_then(|t| serde_json::from_str(&t).ok());
    let mut record = stored
        .clone()
        .filter(|r| r.rk == rating_key)
        .unwrap_or_else(|| Record { rk: rating_key.to_string(), ..Record::default() });
    let known_item = stored.as_ref().is_some_and(|r| r.rk == rating_key);

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
    if stored.as_ref() != Some(&record) {
        run.write(&key, serde_json::to_string(&record).ok());
    }
    Ok(out)
}

fn list_images(run: &mut JobRun<'_>, rating_key: &str, kind: ImageKind) -> Result<Vec<ImageEntry>, Failure> {
    let request = PlexRequest::get(format!("/library/metadata/{rating_key}/{}", kind.collection()));
    let response = run.send(Endpoint::Image, &request)?;
    plex_json::parse_images(&response.body).map_err(|e| malformed(&request, e))
}
