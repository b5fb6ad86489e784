//! The health checks, each answering one question in a line a user can act
//! on (the `health_check` task puts them together):
//!
//! - Stash: one `find-scenes` page of [`SAMPLE_SCENES`] (reachable, and how
//!   many scenes it has);
//! - Plex: `GET /identity` (unauthenticated; PMS answers it only once its
//!   database is up, and it is the official container health check), also
//!   the recovery probe while the breaker is open;
//! - the token: `GET /library/sections` (authenticated), also the
//!   credential check while syncing is paused because Plex rejected it;
//! - the libraries: `plex_library` against the sections that answer lists,
//!   chosen as matching chooses them ([`matching::build_sections`]);
//! - the paths: the most recently updated scenes' files, through
//!   `plex_path_map`, each inside a library folder ([`matching::pick_section`]).
//!
//! Paths are shown through the host's `obfuscate_path`, like every path the
//! policy logs.

use crate::classify::{self, Classified, Endpoint, ErrorClass};
use crate::host::{Describe, Host, PlexRequest, PlexResponse, Scene, ScenePage, SceneQuery, StashError};
use crate::matching::{self, Section};
use crate::pathmap::PathMap;
use crate::plex_json::{self, SectionInfo};
use crate::recovery::PROBE_TIMEOUT_MS;
use crate::text::clip;

/// Scenes asked for by the Stash check, and sampled by the paths check.
pub const SAMPLE_SCENES: u32 = 5;
/// A check's line is cut here (long library lists, long paths).
const MAX_LINE_CHARS: usize = 1_500;
/// A path shown in a line.
const PATH_CHARS: usize = 300;

/// `GET /identity`: `Ok("PMS 1.41.3, 12 ms")` when Plex answers with its
/// identity, the classified failure otherwise.
pub fn identity(host: &dyn Host) -> Result<String, Classified> {
    let mut request = PlexRequest::get("/identity");
    request.timeout_ms = Some(PROBE_TIMEOUT_MS);
    let what = "GET /identity";
    let response = host.plex_send(&request).map_err(|e| classify::transport(&e))?;
    if let Some(c) = classify::response(Endpoint::Identity, &response, what, host.now_ms()) {
        return Err(c);
    }
    let value: serde_json::Value =
        serde_json::from_slice(&response.body).map_err(|e| classify::malformed(what, &format!("not JSON: {e}")))?;
    let Some(container) = value.get("MediaContainer") else {
        return Err(classify::malformed(what, "no MediaContainer: is plex_url a Plex Media Server?"));
    };
    let version = container.get("version").and_then(|v| v.as_str()).unwrap_or("unknown version");
    Ok(format!("Plex Media Server {}, {} ms", crate::text::clip(version, 40), response.elapsed_ms))
}

/// `GET /library/sections` with the token: its answer when Plex accepts
/// the token.
pub fn token(host: &dyn Host) -> Result<PlexResponse, Classified> {
    let mut request = PlexRequest::get("/library/sections");
    request.timeout_ms = Some(PROBE_TIMEOUT_MS);
    let response = host.plex_send(&request).map_err(|e| classify::transport(&e))?;
    match classify::response(Endpoint::Sections, &response, "GET /library/sections", host.now_ms()) {
        None => Ok(response),
        Some(c) => Err(c),
    }
}

/// Whether a failed check was a credential rejection (and its status).
pub fn unauthorized_status(c: &Classified) -> Option<u16> {
    match c.class {
        ErrorClass::PlexUnauthorized { status } => Some(status),
        _ => None,
    }
}

/// What to do about a failed Plex request, when its message does not say.
pub fn plex_advice(class: ErrorClass) -> &'static str {
    match class {
        ErrorClass::PlexUnreachable(_) | ErrorClass::PlexSlow => {
            " Check plex_url in the plugin settings, and that Plex Media Server is running and reachable from the machine Stash runs on."
        }
        ErrorClass::PlexStarting | ErrorClass::PlexOverloaded { .. } => {
            " Plex is starting up or busy: run Health Check again in a minute."
        }
        ErrorClass::PlexMalformed => {
            " Check that plex_url points at Plex Media Server itself (port 32400 unless changed), not at a web page or a proxy's login."
        }
        _ => "",
    }
}

// ---------------------------------------------------------------- Stash

fn page_query(page: u32) -> SceneQuery {
    SceneQuery { page, per_page: SAMPLE_SCENES, ids: Vec::new(), updated_after: None, related: None }
}

/// The Stash check's request: the first page of [`SAMPLE_SCENES`] scenes
/// (its `count` is every scene).
pub fn stash_first_page(host: &dyn Host) -> Result<ScenePage, StashError> {
    host.find_scenes(&page_query(1))
}

/// The Stash check's line.
pub fn stash_line(result: &Result<ScenePage, StashError>) -> String {
    let line = match result {
        Ok(page) => format!("Stash: OK ({})", count_text(page.count, "scene", "scenes")),
        Err(e) => {
            let advice = match e {
                StashError::Unreachable(_) => {
                    "The plugin talks to Stash at the address and with the session Stash starts it with: check that Stash is running and that its host and port are reachable from this machine, then run Health Check again."
                }
                StashError::Unauthorized(_) => {
                    "The plugin uses the session Stash starts it with, and Stash's API key when one is set (Settings > Security): run Health Check again from Stash's Tasks page; if it still fails, generate a new API key in Stash."
                }
                StashError::Graphql(_) => {
                    "Stash may be busy (a scan, a locked database): run Health Check again when its jobs are done."
                }
                StashError::Malformed(_) => "stash2plex reads Stash v0.24 to v0.30: check Stash's version.",
            };
            format!("Stash: FAILED, {}. {advice}", clip(&e.describe(), 400))
        }
    };
    clip(&line, MAX_LINE_CHARS)
}

fn count_text(n: u64, one: &str, many: &str) -> String {
    if n == 1 { format!("1 {one}") } else { format!("{n} {many}") }
}

/// The most recently updated scenes, newest first, at most
/// [`SAMPLE_SCENES`]. Stash lists scenes by `updated_at` ascending, so they
/// are the last page, and the one before it when the last is short; `first`
/// (page 1) is reused when it holds them.
pub fn recent_scenes(host: &dyn Host, first: &ScenePage) -> Result<Vec<Scene>, StashError> {
    let per = u64::from(SAMPLE_SCENES);
    let wanted = first.count.min(per) as usize;
    let last = first.count.div_ceil(per).max(1);
    let page = |n: u64| -> Result<Vec<Scene>, StashError> {
        if n <= 1 {
            return Ok(first.scenes.clone());
        }
        Ok(host.find_scenes(&page_query(u32::try_from(n).unwrap_or(u32::MAX)))?.scenes)
    };
    let mut scenes = page(last)?;
    if scenes.len() < wanted && last > 1 {
        let mut before = page(last - 1)?;
        let keep = before.len().saturating_sub(wanted - scenes.len());
        before.drain(..keep);
        before.append(&mut scenes);
        scenes = before;
    }
    if scenes.is_empty() {
        // Scenes were deleted between the two requests: the first page is
        // still a sample.
        scenes = first.scenes.clone();
    }
    scenes.reverse();
    scenes.truncate(SAMPLE_SCENES as usize);
    Ok(scenes)
}

// ---------------------------------------------------------------- libraries

/// The sections answer, read: Plex's libraries and the ones syncing uses.
pub struct Libraries {
    pub infos: Vec<SectionInfo>,
    /// The movie and TV libraries `plex_library` allows, as matching builds
    /// them.
    pub used: Vec<Section>,
    /// `plex_library` names no movie or TV library has.
    pub missing: Vec<String>,
}

/// Read the `GET /library/sections` answer.
pub fn libraries(response: &PlexResponse, wanted: &[String]) -> Result<Libraries, Classified> {
    let infos = plex_json::parse_sections(&response.body)
        .map_err(|e| classify::malformed("GET /library/sections", &e.to_string()))?;
    let (used, missing) = matching::build_sections(&infos, wanted);
    Ok(Libraries { infos, used, missing })
}

/// A library type as users know it.
fn kind_text(kind: &str) -> &str {
    match kind {
        "movie" => "movie",
        "show" => "TV",
        "artist" => "music",
        "photo" => "photo",
        "" => "unknown",
        other => other,
    }
}

fn title_text(title: &str) -> String {
    clip(title.trim(), 100)
}

/// `Movies (movie), TV Shows (TV), Music (music)`.
fn plex_has(infos: &[SectionInfo]) -> String {
    infos.iter().map(|i| format!("{} ({})", title_text(&i.title), kind_text(&i.kind))).collect::<Vec<_>>().join(", ")
}

fn titles(sections: &[Section]) -> String {
    sections.iter().map(|s| title_text(&s.title)).collect::<Vec<_>>().join(", ")
}

/// The libraries check's line (`wanted` is `plex_library`, lower-cased).
pub fn libraries_line(libs: &Libraries, wanted: &[String]) -> String {
    let line = if wanted.is_empty() && !libs.used.is_empty() {
        format!("Libraries: OK, plex_library is empty, so every movie and TV library is used: {}", titles(&libs.used))
    } else if wanted.is_empty() {
        let has = if libs.infos.is_empty() {
            "no library at all".to_string()
        } else {
            format!("only {}", plex_has(&libs.infos))
        };
        format!(
            "Libraries: FAILED, Plex has no movie or TV library ({has}). Add a movie library in Plex for the folders Stash's files are in."
        )
    } else if libs.missing.is_empty() {
        format!("Libraries: OK, every library in plex_library exists in Plex: {}", titles(&libs.used))
    } else {
        let missing: Vec<String> = libs
            .missing
            .iter()
            .map(|name| {
                let same_name = libs.infos.iter().find(|i| i.title.trim().to_lowercase() == *name);
                match same_name {
                    Some(i) => format!(
                        "\"{}\" (a {} library; only movie and TV libraries are synced)",
                        title_text(&i.title),
                        kind_text(&i.kind)
                    ),
                    None => format!("\"{}\" (no library of that name)", clip(name, 100)),
                }
            })
            .collect();
        let used = if libs.used.is_empty() {
            "no library is used, so nothing can be synced".to_string()
        } else {
            format!("syncing uses only {}", titles(&libs.used))
        };
        let has = if libs.infos.is_empty() { "no library".to_string() } else { plex_has(&libs.infos) };
        format!(
            "Libraries: FAILED, plex_library names no movie or TV library in Plex: {}; {used}. Plex has: {has}. Correct plex_library (library names separated by commas, any case).",
            missing.join(", ")
        )
    };
    clip(&line, MAX_LINE_CHARS)
}

// ---------------------------------------------------------------- paths

/// The paths check's line: do the sampled scenes' files (newest first),
/// as Plex sees them, lie inside a folder of a library syncing uses?
pub fn paths_line(host: &dyn Host, scenes: &[Scene], libs: &Libraries, map: &PathMap) -> String {
    let with_files: Vec<&Scene> = scenes.iter().filter(|s| !s.files.is_empty()).collect();
    let without = scenes.len() - with_files.len();
    if with_files.is_empty() {
        return format!("Paths: not checked, none of the {} most recently updated scene(s) has a file", scenes.len());
    }
    let mut first_miss: Option<&Scene> = None;
    let mut inside = 0;
    for scene in &with_files {
        let paths = matching::plex_paths(map, &scene.files);
        if paths.iter().any(|p| matching::pick_section(&libs.used, p).is_some()) {
            inside += 1;
        } else if first_miss.is_none() {
            first_miss = Some(scene);
        }
    }
    let no_file = if without > 0 {
        format!("; {} without a file", count_text(without as u64, "scene", "scenes"))
    } else {
        String::new()
    };
    let counted = format!(
        "{inside} of {} sampled scenes (the most recently updated) lie in a Plex library folder{no_file}",
        with_files.len()
    );
    let Some(miss) = first_miss else {
        return format!("Paths: OK, {counted}");
    };
    let shown = |p: &str| clip(&host.obfuscate_path(p), PATH_CHARS);
    let stash_path = &miss.files[0].path;
    let plex_path = map.to_plex(stash_path);
    let seen = if plex_path == *stash_path {
        String::new()
    } else {
        format!(" (for Plex, through plex_path_map: {})", shown(&plex_path))
    };
    let folders: Vec<String> = libs
        .used
        .iter()
        .flat_map(|s| {
            s.locations.iter().map(move |l| {
                let folder = if l.is_empty() { "/" } else { l.as_str() };
                format!("{} {}", title_text(&s.title), shown(folder))
            })
        })
        .collect();
    let (all, _) = matching::build_sections(&libs.infos, &[]);
    let hint = match matching::pick_section(&all, &plex_path) {
        Some(other) => format!(
            "It is in library \"{}\", which plex_library leaves out: add that library to plex_library.",
            title_text(&other.title)
        ),
        None if map.is_empty() => "If Plex sees Stash's files under another folder (Docker, a network share, another machine), set plex_path_map to \"stash folder=>plex folder\" (several rules separated by ;); otherwise add the folder to a Plex library.".to_string(),
        None => "Check plex_path_map (\"stash folder=>plex folder\", rules separated by ;), or add the folder to a Plex library.".to_string(),
    };
    let line = format!(
        "Paths: FAILED, {counted}. Scene {}'s file {}{seen} is in no library folder ({}). {hint}",
        clip(&miss.id, 40),
        shown(stash_path),
        if folders.is_empty() { "the libraries have no folders".to_string() } else { folders.join(", ") }
    );
    clip(&line, MAX_LINE_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::TransportError;
    use crate::host::VideoFile;
    use crate::test_support::{FakeHost, Reply, scene, status_response};

    #[test]
    fn identity_probe() {
        let host = FakeHost::new();
        let ok = identity(&host).unwrap();
        assert!(ok.starts_with("Plex Media Server 1.41"), "{ok}");
        assert_eq!(host.requests()[0].timeout_ms, Some(5_000));
        host.script(None, "/identity", Reply::Transport(TransportError::Refused("x".into())), 1);
        assert_eq!(identity(&host).unwrap_err().class.name(), "plex-unavailable");
        host.script(None, "/identity", Reply::Response(status_response(503, "")), 1);
        assert_eq!(identity(&host).unwrap_err().class, ErrorClass::PlexStarting);
        host.script(None, "/identity", Reply::Response(status_response(200, "<html>router</html>")), 1);
        assert_eq!(identity(&host).unwrap_err().class, ErrorClass::PlexMalformed);
        host.script(None, "/identity", Reply::Response(status_response(200, "{\"ok\":1}")), 1);
        assert_eq!(identity(&host).unwrap_err().class, ErrorClass::PlexMalformed);
    }

    #[test]
    fn token_check() {
        let host = FakeHost::new();
        let accepted = token(&host).unwrap();
        assert_eq!(accepted.status, 200);
        assert!(plex_json::parse_sections(&accepted.body).is_ok(), "the answer is handed on for the libraries check");
        host.script(None, "/library/sections", Reply::Response(status_response(401, "")), 1);
        let e = token(&host).unwrap_err();
        assert_eq!(unauthorized_status(&e), Some(401));
        host.script(None, "/library/sections", Reply::Response(status_response(500, "")), 1);
        assert_eq!(unauthorized_status(&token(&host).unwrap_err()), None);
    }

    /// Scenes 1..=n, scene i updated at minute i (so `n` is the newest).
    fn stash_with(n: u32) -> FakeHost {
        let host = FakeHost::new();
        for i in 1..=n {
            let mut s = scene(&i.to_string(), &format!("Scene {i}"), &format!("/data/Movies/{i}.mp4"));
            s.updated_at = format!("2024-02-01T10:{i:02}:00Z");
            host.add_scene(s);
        }
        host
    }

    fn ids(scenes: &[Scene]) -> Vec<&str> {
        scenes.iter().map(|s| s.id.as_str()).collect()
    }

    #[test]
    fn the_sample_is_the_most_recently_updated_scenes_newest_first() {
        // A short last page: the page before it fills the sample.
        let host = stash_with(12);
        let first = stash_first_page(&host).unwrap();
        assert_eq!(first.count, 12);
        assert_eq!(stash_line(&Ok(first.clone())), "Stash: OK (12 scenes)");
        assert_eq!(ids(&recent_scenes(&host, &first).unwrap()), ["12", "11", "10", "9", "8"]);
        assert_eq!(host.scene_pages(), [(1, 5), (3, 5), (2, 5)]);

        // A full last page is enough.
        let host = stash_with(10);
        let first = stash_first_page(&host).unwrap();
        assert_eq!(ids(&recent_scenes(&host, &first).unwrap()), ["10", "9", "8", "7", "6"]);
        assert_eq!(host.scene_pages(), [(1, 5), (2, 5)]);

        // Page 1 is not asked for twice.
        let host = stash_with(6);
        let first = stash_first_page(&host).unwrap();
        assert_eq!(ids(&recent_scenes(&host, &first).unwrap()), ["6", "5", "4", "3", "2"]);
        assert_eq!(host.scene_pages(), [(1, 5), (2, 5)]);

        // Few scenes: the first page is the sample, no second request.
        let host = stash_with(3);
        let first = stash_first_page(&host).unwrap();
        assert_eq!(stash_line(&Ok(first.clone())), "Stash: OK (3 scenes)");
        assert_eq!(ids(&recent_scenes(&host, &first).unwrap()), ["3", "2", "1"]);
        assert_eq!(host.scene_pages(), [(1, 5)]);
    }

    #[test]
    fn a_failed_stash_says_what_happened_and_what_to_do() {
        let host = FakeHost::new();
        host.scenes_error(Some(StashError::Unreachable("connection refused".into())));
        let line = stash_line(&stash_first_page(&host));
        assert!(line.starts_with("Stash: FAILED, Stash unreachable (connection refused). "), "{line}");
        assert!(line.contains("check that Stash is running"), "{line}");
        let line = stash_line(&Err(StashError::Unauthorized("HTTP 401".into())));
        assert!(line.starts_with("Stash: FAILED, Stash refused the credentials (HTTP 401)."), "{line}");
        assert!(line.contains("API key"), "{line}");
        let line = stash_line(&Err(StashError::Graphql("database is locked".into())));
        assert!(line.contains("database is locked") && line.contains("run Health Check again"), "{line}");
    }

    /// The sections answer of the fake PMS (real PMS JSON shape).
    fn libs(host: &FakeHost, wanted: &[&str]) -> (Libraries, Vec<String>) {
        let wanted: Vec<String> = wanted.iter().map(|w| w.to_string()).collect();
        let response = token(host).unwrap();
        (libraries(&response, &wanted).unwrap(), wanted)
    }

    fn plex_with_libraries() -> FakeHost {
        let host = FakeHost::new();
        let mut plex = host.plex.borrow_mut();
        plex.add_section("1", "movie", "Movies", &["/data/Movies/", "/mnt/more"]);
        plex.add_section("2", "show", "TV Shows", &["/data/TV"]);
        plex.add_section("3", "artist", "Music", &["/data/Music"]);
        drop(plex);
        host
    }

    #[test]
    fn libraries_used_missing_and_what_plex_has() {
        let host = plex_with_libraries();
        let (l, w) = libs(&host, &[]);
        assert_eq!(
            libraries_line(&l, &w),
            "Libraries: OK, plex_library is empty, so every movie and TV library is used: Movies, TV Shows"
        );
        assert_eq!(l.used[0].locations, ["/data/Movies", "/mnt/more"], "Location[].path, as matching reads it");

        let (l, w) = libs(&host, &["tv shows", "movies"]);
        assert_eq!(
            libraries_line(&l, &w),
            "Libraries: OK, every library in plex_library exists in Plex: Movies, TV Shows"
        );

        let (l, w) = libs(&host, &["movies", "films", "music"]);
        assert_eq!(
            libraries_line(&l, &w),
            "Libraries: FAILED, plex_library names no movie or TV library in Plex: \"films\" (no library of that name), \
             \"Music\" (a music library; only movie and TV libraries are synced); syncing uses only Movies. \
             Plex has: Movies (movie), TV Shows (TV), Music (music). \
             Correct plex_library (library names separated by commas, any case)."
        );

        let (l, w) = libs(&host, &["films"]);
        assert!(
            libraries_line(&l, &w).contains("; no library is used, so nothing can be synced."),
            "{}",
            libraries_line(&l, &w)
        );

        let host = FakeHost::new();
        host.plex.borrow_mut().add_section("3", "artist", "Music", &["/data/Music"]);
        let (l, w) = libs(&host, &[]);
        assert_eq!(
            libraries_line(&l, &w),
            "Libraries: FAILED, Plex has no movie or TV library (only Music (music)). Add a movie library in Plex for the folders Stash's files are in."
        );
    }

    #[test]
    fn an_unreadable_sections_answer_is_a_failure_not_no_libraries() {
        let host = FakeHost::new();
        host.script(None, "/library/sections", Reply::Response(status_response(200, "<html>proxy login</html>")), 1);
        let response = token(&host).unwrap();
        let e = libraries(&response, &[]).err().unwrap();
        assert_eq!(e.class, ErrorClass::PlexMalformed);
        assert!(e.message.contains("GET /library/sections"), "{}", e.message);
    }

    fn with_file(id: &str, path: &str) -> Scene {
        scene(id, "t", path)
    }

    #[test]
    fn paths_inside_library_folders_after_the_path_map() {
        let host = plex_with_libraries();
        let (l, _) = libs(&host, &[]);
        let none = PathMap::default();
        let mut no_file = with_file("9", "/x");
        no_file.files.clear();
        let sample = vec![
            with_file("5", "/data/Movies/a.mp4"),
            with_file("4", "/mnt/more/b/c.mkv"),
            with_file("3", "/data/TV/Show/S01E01.mkv"),
            no_file,
        ];
        assert_eq!(
            paths_line(&host, &sample, &l, &none),
            "Paths: OK, 3 of 3 sampled scenes (the most recently updated) lie in a Plex library folder; 1 scene without a file"
        );

        // Stash sees the files elsewhere: only the path map puts them inside.
        let sample = vec![with_file("7", "/stash/Movies/a.mp4"), with_file("6", "/data/Movies/b.mp4")];
        let line = paths_line(&host, &sample, &l, &none);
        assert_eq!(
            line,
            "Paths: FAILED, 1 of 2 sampled scenes (the most recently updated) lie in a Plex library folder. \
             Scene 7's file /stash/Movies/a.mp4 is in no library folder (Movies /data/Movies, Movies /mnt/more, TV Shows /data/TV). \
             If Plex sees Stash's files under another folder (Docker, a network share, another machine), set plex_path_map \
             to \"stash folder=>plex folder\" (several rules separated by ;); otherwise add the folder to a Plex library."
        );
        let map = PathMap::parse("/stash=>/data").unwrap();
        assert!(
            paths_line(&host, &sample, &l, &map).starts_with("Paths: OK, 2 of 2"),
            "{}",
            paths_line(&host, &sample, &l, &map)
        );

        // A map that leads elsewhere is named, with where it leads.
        let wrong = PathMap::parse("/stash=>/srv").unwrap();
        let line = paths_line(&host, &sample[..1], &l, &wrong);
        assert!(line.contains("Scene 7's file /stash/Movies/a.mp4 (for Plex, through plex_path_map: /srv/Movies/a.mp4) is in no library folder"), "{line}");
        assert!(line.ends_with("Check plex_path_map (\"stash folder=>plex folder\", rules separated by ;), or add the folder to a Plex library."), "{line}");

        // Any of a scene's files counts, as in matching.
        let mut two = with_file("8", "/elsewhere/a.mp4");
        two.files.push(VideoFile { path: "/data/TV/a.mp4".into(), size: 1, duration_secs: 1.0 });
        assert!(paths_line(&host, &[two], &l, &none).starts_with("Paths: OK, 1 of 1"));
    }

    #[test]
    fn a_file_in_a_library_plex_library_leaves_out_says_so() {
        let host = plex_with_libraries();
        let (l, _) = libs(&host, &["movies"]);
        let line = paths_line(&host, &[with_file("3", "/data/TV/Show/S01E01.mkv")], &l, &PathMap::default());
        assert!(line.starts_with("Paths: FAILED, 0 of 1 sampled scenes"), "{line}");
        assert!(line.contains("(Movies /data/Movies, Movies /mnt/more)"), "only the used libraries' folders: {line}");
        assert!(
            line.ends_with(
                "It is in library \"TV Shows\", which plex_library leaves out: add that library to plex_library."
            ),
            "{line}"
        );
    }

    #[test]
    fn paths_are_shown_obfuscated_when_the_user_asks() {
        let host = plex_with_libraries();
        host.obfuscate_paths(true);
        let (l, _) = libs(&host, &[]);
        let line = paths_line(&host, &[with_file("3", "/secret/Studio/name.mp4")], &l, &PathMap::default());
        assert!(!line.contains("secret") && !line.contains("name.mp4") && !line.contains("/data/Movies"), "{line}");
        assert!(line.contains("Scene 3's file /xxx/xxx/xxx is in no library folder (Movies /xxx/xxx,"), "{line}");
        let mut empty = with_file("1", "/x");
        empty.files.clear();
        assert_eq!(
            paths_line(&host, &[empty], &l, &PathMap::default()),
            "Paths: not checked, none of the 1 most recently updated scene(s) has a file"
        );
    }
}
