//! `stash`: typed scene look-ups through Stash's GraphQL API. Every image
//! URL a look-up hands the policy is remembered in [`ImageGrants`]: those
//! are the only Stash URLs the policy may later ask the host to upload.

use crate::net::stash::StashClient;
use crate::runtime::wit::stash;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// Image URLs the policy has been given (screenshots, performer images).
#[derive(Default)]
pub struct ImageGrants(Mutex<HashSet<String>>);

/// More than a drain of the largest library needs; past it the oldest
/// grants are forgotten (the policy looks the scene up again).
const MAX_GRANTS: usize = 500_000;

impl ImageGrants {
    pub(crate) fn grant_scene(&self, scene: &stash::Scene) {
        let Ok(mut set) = self.0.lock() else { return };
        if set.len() > MAX_GRANTS {
            set.clear();
        }
        let urls = scene.screenshot_url.iter().chain(scene.performers.iter().filter_map(|p| p.image_url.as_ref()));
        for url in urls {
            set.insert(url.clone());
        }
    }

    /// Was `url` handed to the policy by a scene look-up?
    pub fn allows(&self, url: &str) -> bool {
        self.0.lock().is_ok_and(|set| set.contains(url))
    }
}

#[derive(Default)]
pub struct StashCap {
    pub client: Option<Arc<StashClient>>,
    /// Scenes to answer look-ups from instead of a Stash server (admission's
    /// conformance vectors, `stash2plex policy run`).
    pub recorded: Option<Vec<stash::Scene>>,
    pub grants: Arc<ImageGrants>,
    /// GraphQL requests sent for the policy.
    pub requests: u64,
    /// Images downloaded for `image-digest`.
    pub images: u64,
}

impl StashCap {
    fn client(&mut self) -> Result<&StashClient, stash::StashError> {
        self.requests += 1;
        self.client
            .as_deref()
            .ok_or_else(|| stash::StashError::Unreachable("no Stash connection in this invocation".into()))
    }
}

/// A page of recorded scenes, filtered by ids and the update watermark.
fn recorded_page(scenes: &[stash::Scene], q: &stash::SceneQuery) -> stash::ScenePage {
    let matching: Vec<&stash::Scene> = scenes
        .iter()
        .filter(|s| q.ids.is_empty() || q.ids.contains(&s.id))
        .filter(|s| q.updated_after.as_ref().is_none_or(|after| s.updated_at.as_str() > after.as_str()))
        .filter(|_| q.related.is_none())
        .collect();
    let per = q.per_page.clamp(1, 250) as usize;
    let skip = (q.page.max(1) as usize - 1) * per;
    stash::ScenePage {
        count: matching.len() as u64,
        scenes: matching.into_iter().skip(skip).take(per).cloned().collect(),
    }
}

impl stash::Host for StashCap {
    fn find_scene(&mut self, id: String) -> wasmtime::Result<Result<Option<stash::Scene>, stash::StashError>> {
        let found = match &self.recorded {
            Some(scenes) => Ok(scenes.iter().find(|s| s.id == id).cloned()),
            None => self.client().and_then(|c| c.find_scene(&id).map_err(Into::into)),
        };
        if let Ok(Some(scene)) = &found {
            self.grants.grant_scene(scene);
        }
        Ok(found)
    }

    fn find_scenes(
        &mut self,
        query: stash::SceneQuery,
    ) -> wasmtime::Result<Result<stash::ScenePage, stash::StashError>> {
        let page = match &self.recorded {
            Some(scenes) => Ok(recorded_page(scenes, &query)),
            None => self.client().and_then(|c| c.find_scenes(&query).map_err(Into::into)),
        };
        if let Ok(page) = &page {
            page.scenes.iter().for_each(|s| self.grants.grant_scene(s));
        }
        Ok(page)
    }

    fn image_digest(&mut self, url: String) -> wasmtime::Result<Result<stash::ImageInfo, stash::StashError>> {
        if !self.grants.allows(&url) {
            let shown: String = url.chars().take(120).collect();
            return Ok(Err(stash::StashError::Malformed(format!(
                "refused by the host: {shown} is not an image URL of a scene the policy was given by a Stash look-up"
            ))));
        }
        self.images += 1;
        let Some(client) = self.client.as_deref() else {
            return Ok(Err(stash::StashError::Unreachable("no Stash connection in this invocation".into())));
        };
        Ok(client.image_digest(&url).map(|d| stash::ImageInfo { sha1: d.sha1, size: d.size }).map_err(Into::into))
    }
}
