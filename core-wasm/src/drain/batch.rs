//! Jobs that are due together are worked on together: one `claim` per job
//! up to [`BATCH_SIZE`], one paged `findScenes` by id for their scenes, and
//! one `GET /library/metadata/{rk},{rk},…` for the Plex items the path index
//! already knows. Each step still finishes one job; the rest wait in memory
//! with their leases (renewed when half used) and are given back when the
//! breaker opens or the token is rejected.

use std::collections::HashMap;

use super::{DrainState, Failure, JobRun, LEASE_MS, malformed};
use crate::classify::{self, Classified, Endpoint, ErrorClass};
use crate::host::{Host, Job, PlexRequest, Scene, SceneQuery, StateWrite};
use crate::matching;
use crate::plex_json::{self, PlexItem};

/// Jobs claimed and looked up together.
pub const BATCH_SIZE: u32 = 50;
/// ratingKeys per `GET /library/metadata/{rk},…`.
const ITEMS_PER_GET: usize = 50;

/// A claimed job waiting for its step, with its Stash scene.
#[derive(Debug)]
pub struct Held {
    pub job: Job,
    pub scene: Result<Option<Scene>, Classified>,
    /// When the lease was last taken or renewed.
    pub leased_ms: i64,
}

/// The next job to work on: from the batch, or a new batch.
pub fn next(state: &mut DrainState, host: &dyn Host, need_scenes: bool, max: u32) -> Result<Option<Held>, String> {
    if let Some(held) = state.batch.pop_front() {
        return Ok(Some(held));
    }
    let now = host.now_ms();
    let mut jobs = Vec::new();
    while (jobs.len() as u32) < max.max(1) {
        match host.claim(LEASE_MS) {
            Ok(Some(job)) => jobs.push(job),
            Ok(None) => break,
            Err(e) if jobs.is_empty() => {
                return Err(format!("could not claim a job: {}", crate::host::Describe::describe(&e)));
            }
            Err(_) => break,
        }
    }
    if jobs.is_empty() {
        return Ok(None);
    }
    let scenes = if need_scenes { look_up(host, &jobs) } else { Ok(HashMap::new()) };
    for job in jobs {
        let scene = match &scenes {
            Ok(found) => Ok(found.get(&job.scene_id).cloned()),
            Err(c) => Err(c.clone()),
        };
        state.batch.push_back(Held { job, scene, leased_ms: now });
    }
    Ok(state.batch.pop_front())
}

/// The scenes of `jobs` in as few `findScenes` pages as Stash needs.
fn look_up(host: &dyn Host, jobs: &[Job]) -> Result<HashMap<String, Scene>, Classified> {
    // Object jobs (`performer:12`) have no scene of their own.
    let mut ids: Vec<String> =
        jobs.iter().filter(|j| crate::fanout::object(&j.scene_id).is_none()).map(|j| j.scene_id.clone()).collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    ids.sort();
    ids.dedup();
    let per_page = u32::try_from(ids.len()).unwrap_or(BATCH_SIZE).clamp(1, 250);
    let mut found = HashMap::new();
    let mut page = 1;
    loop {
        let query = SceneQuery { page, per_page, ids: ids.clone(), updated_after: None, related: None };
        let result = host.find_scenes(&query).map_err(|e| classify::stash(&e))?;
        let got = result.scenes.len();
        for scene in result.scenes {
            if ids.contains(&scene.id) {
                found.insert(scene.id.clone(), scene);
            }
        }
        let seen = u64::from(page) * u64::from(per_page);
        if got == 0 || seen >= result.count || found.len() == ids.len() || page >= 20 {
            return Ok(found);
        }
        page += 1;
    }
}

/// Give every held job back, due at `until` (not counted as an attempt),
/// each with the reliability state.
pub fn release_all(state: &mut DrainState, host: &dyn Host, until: i64, writes: &[StateWrite]) {
    for held in state.batch.drain(..) {
        let _ = host.release(held.job.id, held.job.lease, until, writes);
    }
    state.prefetched.clear();
}

/// Renew the leases of held jobs that are half used.
pub fn renew_held(state: &mut DrainState, host: &dyn Host, now: i64) {
    state.batch.retain_mut(|held| {
        if now.saturating_sub(held.leased_ms) < i64::from(LEASE_MS / 2) {
            return true;
        }
        match host.renew(held.job.id, held.job.lease, LEASE_MS) {
            Ok(()) => {
                held.leased_ms = now;
                true
            }
            // Another drainer has it now; forget it.
            Err(_) => false,
        }
    });
}

/// The full record of `rating_key`: prefetched, or fetched together with
/// the items of the other held jobs the index already knows.
pub fn full_item(state: &mut DrainState, run: &mut JobRun<'_>, rating_key: &str) -> Result<Option<PlexItem>, Failure> {
    if let Some(item) = state.prefetched.remove(rating_key) {
        return Ok(Some(item));
    }
    let mut keys = vec![rating_key.to_string()];
    if let Some(sections) = state.sections.as_deref() {
        for held in &state.batch {
            if keys.len() >= ITEMS_PER_GET {
                break;
            }
            let Ok(Some(scene)) = &held.scene else { continue };
            let Some(file) = scene.files.first() else { continue };
            let path = run.settings.path_map.to_plex(&file.path);
            let Some(section) = matching::pick_section(sections, &path) else { continue };
            if let Some(matching::Resolution::Found(rk)) = state.index.peek(section, &path)
                && !keys.contains(&rk)
                && !state.prefetched.contains_key(&rk)
            {
                keys.push(rk);
            }
        }
    }
    let request = PlexRequest::get(format!("/library/metadata/{}", keys.join(",")));
    let response = match run.send(Endpoint::Item, &request) {
        Ok(response) => response,
        // None of them exists any more.
        Err(Failure::Class(c)) if c.class == ErrorClass::StaleItem => return Ok(None),
        Err(other) => return Err(other),
    };
    let items = plex_json::parse_items(&response.body).map_err(|e| malformed(&request, e))?;
    let mut wanted = None;
    for item in items {
        if item.rating_key == rating_key {
            wanted = Some(item);
        } else if keys.contains(&item.rating_key) {
            state.prefetched.insert(item.rating_key.clone(), item);
        }
    }
    Ok(wanted)
}
