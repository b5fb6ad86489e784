//! `stash`: typed scene look-ups through Stash's GraphQL API.

use crate::net::stash::StashClient;
use crate::runtime::wit::stash;
use std::sync::Arc;

#[derive(Default)]
pub struct StashCap {
    pub client: Option<Arc<StashClient>>,
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

impl stash::Host for StashCap {
    fn find_scene(&mut self, id: String) -> wasmtime::Result<Result<Option<stash::Scene>, stash::StashError>> {
        Ok(self.client().and_then(|c| c.find_scene(&id).map_err(Into::into)))
    }

    fn find_scenes(
        &mut self,
        query: stash::SceneQuery,
    ) -> wasmtime::Result<Result<stash::ScenePage, stash::StashError>> {
        Ok(self.client().and_then(|c| c.find_scenes(&query).map_err(Into::into)))
    }

    fn image_digest(&mut self, url: String) -> wasmtime::Result<Result<stash::ImageInfo, stash::StashError>> {
        self.images += 1;
        let Some(client) = self.client.as_deref() else {
            return Ok(Err(stash::StashError::Unreachable("no Stash connection in this invocation".into())));
        };
        Ok(client.image_digest(&url).map(|d| stash::ImageInfo { sha1: d.sha1, size: d.size }).map_err(Into::into))
    }
}
