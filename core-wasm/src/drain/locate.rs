//! From a scene's files to the Plex item: section, path index, refresh,
//! the `file=` and title fallbacks, confidence, and files Plex has not
//! scanned yet (see `matching` and `scan`).

use super::{DrainState, Failure, JobRun, MAX_ERROR_CHARS, MAX_PAGES_PER_STEP, malformed};
use crate::classify::{self, Endpoint, ErrorClass};
use crate::host::{LogLevel, PlexRequest, Scene};
use crate::matching::{self, Resolution, Section};
use crate::plex_json::{self, ListingPage, PlexItem};
use crate::scan::{self, Decision, Scans};
use crate::text::clip;

/// A section's newest items are read at most this often while jobs miss.
const REFRESH_INTERVAL_MS: i64 = 5_000;
/// `GET /activities` answers are reused this long.
const ACTIVITIES_TTL_MS: i64 = 1_000;

/// Where a job stands after matching.
pub enum Located {
    /// The item, read in full, and how sure the match is.
    Item { rating_key: String, item: Box<PlexItem>, section: Section, confidence: Confidence },
    /// The listing budget of this step ran out.
    Unfinished { section: String, listed: u64, total: Option<u64> },
    /// Waiting for a Plex scan of the file's folder until this time.
    Parked { until: i64, folder: String, requested: bool },
    /// No Plex item has any of the scene's files, and `skip_not_found` says
    /// to drop the change.
    Skipped,
}

/// How a match was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confidence {
    /// A part's file is exactly the (mapped) path.
    ExactPath,
    /// No exact path, but exactly one item in the section has a file of
    /// that name (only without `strict_matching`).
    UniqueName,
}

/// The sections, fetched once per instance.
pub fn sections(state: &mut DrainState, run: &mut JobRun<'_>) -> Result<Vec<Section>, Failure> {
    if state.sections.is_none() {
        let request = PlexRequest::get("/library/sections");
        let response = run.send(Endpoint::Sections, &request)?;
        let infos = plex_json::parse_sections(&response.body).map_err(|e| malformed(&request, e))?;
        let (sections, missing) = matching::build_sections(&infos, &run.settings.plex_library);
        if !missing.is_empty() {
            run.host.log(
                LogLevel::Warn,
                &clip(
                    &format!("plex_library names not found in Plex as movie or TV libraries: {}", missing.join(", ")),
                    MAX_ERROR_CHARS,
                ),
            );
        }
        state.sections = Some(sections);
    }
    Ok(state.sections.clone().unwrap_or_default())
}

fn fetch_listing(run: &mut JobRun<'_>, request: &PlexRequest) -> Result<ListingPage, Failure> {
    let response = run.send(Endpoint::Listing, request)?;
    plex_json::parse_listing(&response.body).map_err(|e| malformed(request, e))
}

fn stale_section(state: &mut DrainState, section: &Section, c: classify::Classified) -> Failure {
    state.sections = None;
    state.index.invalidate(&section.key);
    classify::not_in_plex(c.message).into()
}

/// Find the item for the scene and read it in full.
pub fn locate(state: &mut DrainState, run: &mut JobRun<'_>, scene: &Scene) -> Result<Located, Failure> {
    let sections = sections(state, run)?;
    let paths = matching::plex_paths(&run.settings.path_map, &scene.files);
    let candidates: Vec<(Section, String)> =
        paths.iter().filter_map(|p| matching::pick_section(&sections, p).map(|s| (s.clone(), p.clone()))).collect();
    if candidates.is_empty() {
        return Err(no_section(run, &sections, &paths));
    }
    run.shown_path = Some(clip(&run.host.obfuscate_path(&candidates[0].1), super::PATH_LOG_CHARS));

    // 1. The path index (listing pages as needed), every file in order.
    let mut stale_once = false;
    'again: loop {
        for (section, path) in &candidates {
            let resolution =
                state.index.resolve(section, path, MAX_PAGES_PER_STEP, |request| fetch_listing(run, request));
            let resolution = match resolution {
                Ok(r) => r,
                Err(Failure::Class(c)) if c.class == ErrorClass::StaleSection => {
                    return Err(stale_section(state, section, c));
                }
                Err(other) => return Err(other),
            };
            let rating_key = match resolution {
                Resolution::Found(rk) => rk,
                Resolution::Ambiguous(keys) => ambiguous_pick(run, section, keys)?,
                Resolution::NotInPlex => continue,
                Resolution::Unfinished { listed, total } => {
                    return Ok(Located::Unfinished { section: section.title.clone(), listed, total });
                }
            };
            if let Some(located) = verified(state, run, section, path, rating_key)? {
                return Ok(located);
            }
            // The index was stale (its entry is forgotten): look again once.
            if stale_once {
                continue;
            }
            stale_once = true;
            continue 'again;
        }
        break;
    }

    // 2. Missing: wait for a scan we asked for, if one is running.
    let (section, path) = candidates[0].clone();
    let folder = scan::folder_of(&path).to_string();
    let scan_key = scan::key(&section.key, &folder);
    if run.settings.trigger_plex_scan {
        let now = run.host.now_ms();
        let mut scans = load_scans(state, run);
        let mut asked: Result<bool, Failure> = Ok(false);
        let pending = scans.pending(&scan_key, now, || match scanning(state, run, &section.key, now) {
            Ok(running) => running,
            Err(e) => {
                asked = Err(e);
                true
            }
        });
        asked?;
        let ended_now = pending.is_none() && scans.0.get(&scan_key).is_some_and(|s| s.ended == Some(now));
        store_scans(state, run, scans, ended_now);
        if let Some(until) = pending {
            return Ok(Located::Parked { until, folder, requested: false });
        }
    }

    // 3. Fallbacks: newest items, `file=`, title search; each verified.
    for (section, path) in &candidates {
        if let Some(found) = fallbacks(state, run, section, path)? {
            return Ok(found);
        }
    }

    // 4. A unique file name in another folder (never under strict matching).
    for (section, path) in &candidates {
        let same = state.index.same_name(section, path);
        match same.as_slice() {
            [] => {}
            [rk] if !run.settings.strict_matching => {
                if let Some(item) = super::batch::full_item(state, run, rk)? {
                    run.host.log(
                        LogLevel::Warn,
                        &clip(
                            &format!(
                                "{}: no Plex item has this exact path; Plex item {rk} has a file of the same name in another folder and is used because strict_matching is off (set plex_path_map if Plex sees the files under another folder)",
                                run.who()
                            ),
                            MAX_ERROR_CHARS,
                        ),
                    );
                    return Ok(Located::Item {
                        rating_key: rk.clone(),
                        item: Box::new(item),
                        section: section.clone(),
                        confidence: Confidence::UniqueName,
                    });
                }
            }
            [rk] => {
                return Err(classify::ambiguous(clip(
                    &format!(
                        "no Plex item in library \"{}\" has the file {}, but item {rk} has a file of the same name in another folder; strict_matching only accepts exact paths (set plex_path_map if Plex sees Stash's files under another folder, or turn strict_matching off)",
                        section.title,
                        run.shown_path()
                    ),
                    MAX_ERROR_CHARS,
                ))
                .into());
            }
            many => {
                if !run.settings.strict_matching {
                    return Err(classify::ambiguous(clip(
                        &format!(
                            "no Plex item has the file {} and {} items in library \"{}\" have a file of that name (ratingKeys {}); refusing to guess",
                            run.shown_path(),
                            many.len(),
                            section.title,
                            many.join(", ")
                        ),
                        MAX_ERROR_CHARS,
                    ))
                    .into());
                }
            }
        }
    }

    // 5. Not in Plex.
    if run.settings.skip_not_found {
        return Ok(Located::Skipped);
    }
    if run.settings.trigger_plex_scan {
        let now = run.host.now_ms();
        let mut scans = load_scans(state, run);
        match scans.decide(&scan_key, now) {
            Decision::Request => {
                let mut request = PlexRequest::get(format!("/library/sections/{}/refresh", section.key));
                request.query.push(("path".into(), folder.clone()));
                run.send(Endpoint::Scan, &request)?;
                scans.requested(&scan_key, now);
                store_scans(state, run, scans, true);
                return Ok(Located::Parked { until: now + scan::SETTLE_MS, folder, requested: true });
            }
            Decision::Park(until) => return Ok(Located::Parked { until, folder, requested: false }),
            Decision::LookAgain => {}
        }
    }
    Err(run.not_in_plex(&section))
}

/// Strict matching refuses to pick among several items with the same path.
fn ambiguous_pick(run: &mut JobRun<'_>, section: &Section, keys: Vec<String>) -> Result<String, Failure> {
    let listed = clip(&keys.join(", "), MAX_ERROR_CHARS);
    if run.settings.strict_matching {
        return Err(classify::ambiguous(format!(
            "{} Plex items in library \"{}\" have the file {} (ratingKeys {listed}); strict_matching refuses to guess",
            keys.len(),
            section.title,
            run.shown_path()
        ))
        .into());
    }
    let Some(lowest) = keys.into_iter().next() else {
        return Err(run.not_in_plex(section));
    };
    run.host.log(
        LogLevel::Warn,
        &format!(
            "{}: several Plex items have this file (ratingKeys {listed}); using {lowest} because strict_matching is off",
            run.who()
        ),
    );
    Ok(lowest)
}

/// The newest items, then `file=`, then a title search, each answer checked
/// against `Part.file`.
fn fallbacks(
    state: &mut DrainState,
    run: &mut JobRun<'_>,
    section: &Section,
    path: &str,
) -> Result<Option<Located>, Failure> {
    let now = run.host.now_ms();
    let refreshed = state.index.refresh(section, now, REFRESH_INTERVAL_MS, |request| fetch_listing(run, request));
    match refreshed {
        Ok(_) => {}
        Err(Failure::Class(c)) if c.class == ErrorClass::StaleSection => return Err(stale_section(state, section, c)),
        Err(other) => return Err(other),
    }
    if let Some(found) = found_in_index(state, run, section, path)? {
        return Ok(Some(found));
    }
    for (key, value) in [("file", path.to_string()), ("title", matching::title_guess(path))] {
        if value.is_empty() {
            continue;
        }
        let request = matching::filter_request(section, key, &value);
        let page = match fetch_listing(run, &request) {
            Ok(page) => page,
            // Plex may not know the filter (the `file=` filter is
            // undocumented): an error there only means "no answer".
            Err(Failure::Class(c)) if matches!(c.class, ErrorClass::BadRequest { .. }) => continue,
            Err(Failure::Class(c)) if c.class == ErrorClass::StaleSection => {
                return Err(stale_section(state, section, c));
            }
            Err(other) => return Err(other),
        };
        let want = section.key_of(path);
        let exact: Vec<_> =
            page.items.into_iter().filter(|i| i.files.iter().any(|f| section.key_of(f) == want)).collect();
        if exact.is_empty() {
            continue;
        }
        state.index.learn(section, &exact);
        if let Some(found) = found_in_index(state, run, section, path)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

fn found_in_index(
    state: &mut DrainState,
    run: &mut JobRun<'_>,
    section: &Section,
    path: &str,
) -> Result<Option<Located>, Failure> {
    let rating_key = match state.index.peek(section, path) {
        Some(Resolution::Found(rk)) => rk,
        Some(Resolution::Ambiguous(keys)) => ambiguous_pick(run, section, keys)?,
        _ => return Ok(None),
    };
    verified(state, run, section, path, rating_key)
}

/// The item the index named for `path`, read in full, if it really holds
/// the file; otherwise the index entry was stale and is forgotten.
fn verified(
    state: &mut DrainState,
    run: &mut JobRun<'_>,
    section: &Section,
    path: &str,
    rating_key: String,
) -> Result<Option<Located>, Failure> {
    match super::batch::full_item(state, run, &rating_key)? {
        Some(item) if item.files.iter().any(|f| section.key_of(f) == section.key_of(path)) => Ok(Some(Located::Item {
            rating_key,
            item: Box::new(item),
            section: section.clone(),
            confidence: Confidence::ExactPath,
        })),
        _ => {
            state.index.forget(section, path, &rating_key);
            Ok(None)
        }
    }
}

fn no_section(run: &JobRun<'_>, sections: &[Section], paths: &[String]) -> Failure {
    let shown = paths.first().map_or_else(|| "(no path)".to_string(), |p| clip(&run.host.obfuscate_path(p), 300));
    let message = if sections.is_empty() && !run.settings.plex_library.is_empty() {
        format!(
            "none of the libraries in plex_library ({}) is a movie or TV library in Plex, so no Plex library folder contains {shown}",
            run.settings.plex_library.join(", ")
        )
    } else {
        let searched: Vec<&str> = sections.iter().map(|s| s.title.as_str()).collect();
        let hint = if run.settings.path_map.is_empty() {
            "; if Plex sees Stash's files under another folder, set plex_path_map"
        } else {
            ""
        };
        format!("no Plex library folder contains {shown} (libraries searched: {}){hint}", searched.join(", "))
    };
    classify::not_in_plex(clip(&message, MAX_ERROR_CHARS)).into()
}

fn load_scans(state: &mut DrainState, run: &JobRun<'_>) -> Scans {
    if state.scans.is_none() {
        let text = run.host.state_get(scan::STATE_KEY).ok().flatten();
        state.scans = Some(Scans::parse(text.as_deref()));
    }
    state.scans.clone().unwrap_or_default()
}

fn store_scans(state: &mut DrainState, run: &mut JobRun<'_>, scans: Scans, changed: bool) {
    if changed {
        run.write(scan::STATE_KEY, Some(scans.to_json()));
    }
    state.scans = Some(scans);
}

/// Whether Plex reports a scan of the section (`GET /activities`, reused
/// for a second across jobs).
fn scanning(state: &mut DrainState, run: &mut JobRun<'_>, section: &str, now: i64) -> Result<bool, Failure> {
    let fresh = state.activities.as_ref().filter(|(at, _)| now.saturating_sub(*at) < ACTIVITIES_TTL_MS);
    let activities = match fresh {
        Some((_, a)) => a.clone(),
        None => {
            let request = PlexRequest::get("/activities");
            let response = run.send(Endpoint::Activities, &request)?;
            let a = plex_json::parse_activities(&response.body).map_err(|e| malformed(&request, e))?;
            state.activities = Some((now, a.clone()));
            a
        }
    };
    Ok(scan::scanning(&activities, section))
}
