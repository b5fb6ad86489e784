//! Whole-step tests through the fake host.

use super::*;
use crate::host::{Method, StashError, StepOutcome, TransportError};
use crate::policy::Policy;
use crate::test_support::{FakeHost, Reply, host_settings, scene, status_response};

const PATH: &str = "/data/Movies/Scene A.mkv";

/// The four fields these tests are about; the other fields are off (they
/// are covered by `desired`, `edits` and the end-to-end tests).
const CORE_FIELDS: &str = r#"{"sync_sort_title":"off","sync_tagline":false,"sync_performers":false,
    "sync_tags":false,"sync_collection":false,"sync_group_collections":false}"#;

/// `CORE_FIELDS` plus more settings (a JSON object's inside).
fn core_plus(more: &str) -> String {
    if more.trim().is_empty() {
        return CORE_FIELDS.to_string();
    }
    format!("{},{more}}}", CORE_FIELDS.trim_end().trim_end_matches('}'))
}

/// Plex with a movie section (3 items, ours is 108) and a show section;
/// Stash with scene 12 at PATH, queued.
fn setup() -> (FakeHost, Policy) {
    let host = FakeHost::new();
    {
        let mut plex = host.plex.borrow_mut();
        plex.add_section("1", "movie", "Movies", &["/data/Movies"]);
        plex.add_section("2", "show", "TV Shows", &["/data/TV"]);
        plex.add_section("3", "artist", "Music", &["/data"]);
        plex.add_item("1", "100", "Other", "/data/Movies/other.mkv");
        plex.add_item("1", "108", "Old title", PATH);
        plex.add_item("1", "109", "Third", "/data/Movies/third.mkv");
    }
    host.add_scene(scene("12", "Scene A", PATH));
    host.enqueue_now("12");
    let mut policy = Policy::new();
    policy.configure(&host, &host_settings(CORE_FIELDS).unwrap()).unwrap();
    (host, policy)
}

/// `setup` with more settings (JSON text) on top of `CORE_FIELDS`.
fn configured(settings: &str) -> (FakeHost, Policy) {
    let (host, mut policy) = setup();
    let inner = settings.trim().trim_start_matches('{').trim_end_matches('}');
    policy.configure(&host, &host_settings(&core_plus(inner)).unwrap()).unwrap();
    (host, policy)
}

fn worked(outcome: Result<StepOutcome, String>) -> String {
    match outcome {
        Ok(StepOutcome::Worked(s)) => s,
        other => panic!("expected worked, got {other:?}"),
    }
}

/// Step, honouring `wait-ms` (pacing) on the fake clock, until a step works.
fn work(host: &FakeHost, policy: &mut Policy) -> String {
    for _ in 0..100 {
        match policy.step(host) {
            Ok(StepOutcome::WaitMs(ms)) => host.advance(i64::from(ms)),
            other => return worked(other),
        }
    }
    panic!("still waiting after 100 steps")
}

fn query(req: &PlexRequest) -> Vec<(&str, &str)> {
    req.query.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[test]
fn first_sync_sends_five_requests_one_locked_put_and_reads_back() {
    let (host, mut policy) = setup();
    let summary = work(&host, &mut policy);
    assert_eq!(
        host.request_lines(),
        vec![
            "GET /library/sections",
            "GET /library/sections/1/all",
            "GET /library/metadata/108",
            "PUT /library/sections/1/all",
            "GET /library/metadata/108",
        ]
    );
    let requests = host.requests();
    assert_eq!(query(&requests[1]), vec![("type", "1")]);
    assert_eq!(requests[1].header_value("X-Plex-Container-Start"), Some("0"));
    assert_eq!(requests[1].header_value("X-Plex-Container-Size"), Some("200"));
    assert_eq!(
        query(&requests[3]),
        vec![
            ("type", "1"),
            ("id", "108"),
            ("title.value", "Scene A"),
            ("title.locked", "1"),
            ("summary.value", "Details of Scene A.\n\nSecond paragraph."),
            ("summary.locked", "1"),
            ("originallyAvailableAt.value", "2024-01-15"),
            ("originallyAvailableAt.locked", "1"),
            ("studio.value", "Studio X"),
            ("studio.locked", "1"),
        ]
    );
    // Plex now has the values, locked.
    let plex = host.plex.borrow();
    let item = plex.item("108").unwrap();
    assert_eq!(item.title, "Scene A");
    assert_eq!(item.studio, "Studio X");
    assert_eq!(item.locked.len(), 4);
    drop(plex);
    // Job done, queue empty.
    assert!(host.jobs().is_empty());
    assert_eq!(host.completed().len(), 1);
    assert!(summary.contains("scene 12") && summary.contains("5 Plex requests"), "{summary}");
    assert!(host.logged("synced title, summary, originallyAvailableAt, studio to Plex item 108; verified"));
    assert_eq!(policy.step(&host), Ok(StepOutcome::Idle(None)));
}

#[test]
fn unchanged_scene_sends_no_put() {
    let (host, mut policy) = setup();
    work(&host, &mut policy);
    host.clear_requests();
    host.enqueue_now("12");
    let summary = work(&host, &mut policy);
    // Sections and index are cached: one GET to verify the item, no PUT.
    assert_eq!(host.request_lines(), vec!["GET /library/metadata/108"]);
    assert!(summary.contains("already in sync"), "{summary}");
    assert!(host.jobs().is_empty());
    // A fresh instance (new drain) also sends no PUT.
    let mut fresh = Policy::new();
    fresh.configure(&host, &host_settings(CORE_FIELDS).unwrap()).unwrap();
    host.clear_requests();
    host.enqueue_now("12");
    work(&host, &mut fresh);
    assert!(host.request_lines().iter().all(|l| !l.starts_with("PUT")));
}

#[test]
fn a_changed_field_is_the_only_one_written() {
    let (host, mut policy) = setup();
    work(&host, &mut policy);
    let mut s = scene("12", "Scene A", PATH);
    s.title = Some("Renamed".into());
    host.add_scene(s);
    host.enqueue_now("12");
    host.clear_requests();
    work(&host, &mut policy);
    let put = host.requests().into_iter().find(|r| r.method == Method::Put).unwrap();
    assert_eq!(query(&put), vec![("type", "1"), ("id", "108"), ("title.value", "Renamed"), ("title.locked", "1")]);
}

#[test]
fn listing_pages_continue_where_they_stopped() {
    let (host, mut policy) = setup();
    {
        let mut plex = host.plex.borrow_mut();
        for i in 0..450 {
            plex.add_item("1", &format!("{}", 1000 + i), "x", &format!("/data/Movies/f{i}.mkv"));
        }
    }
    // Ours (108) is the second item; put scene 13 on the third page.
    host.add_scene(scene("13", "Far", "/data/Movies/f420.mkv"));
    work(&host, &mut policy);
    host.enqueue_now("13");
    host.clear_requests();
    work(&host, &mut policy);
    let starts: Vec<String> = host
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/all") && r.method == Method::Get)
        .filter_map(|r| r.header_value("X-Plex-Container-Start").map(String::from))
        .collect();
    // Page 0 was listed for scene 12 already.
    assert_eq!(starts, vec!["200", "400"]);
    assert!(host.logged("Plex item 1420"));
}

#[test]
fn stale_index_entry_is_rematched_in_the_same_step() {
    let (host, mut policy) = setup();
    work(&host, &mut policy);
    // Plex re-scanned: 108 is gone, the file now belongs to 300.
    {
        let mut plex = host.plex.borrow_mut();
        plex.remove_item("108");
        plex.add_item("1", "300", "Rescanned", PATH);
    }
    let mut s = scene("12", "Scene A", PATH);
    s.title = Some("Scene A v2".into());
    host.add_scene(s);
    host.enqueue_now("12");
    host.clear_requests();
    work(&host, &mut policy);
    assert_eq!(
        host.request_lines(),
        vec![
            "GET /library/metadata/108",
            // Refreshed with the newest items, not listed again.
            "GET /library/sections/1/all",
            "GET /library/metadata/300",
            "PUT /library/sections/1/all",
            "GET /library/metadata/300",
        ]
    );
    assert_eq!(host.requests()[1].query_value("sort"), Some("addedAt:desc"));
    assert_eq!(host.plex.borrow().item("300").unwrap().title, "Scene A v2");
    assert!(host.jobs().is_empty());
}

#[test]
fn stale_twice_waits_for_plex() {
    let (host, mut policy) = setup();
    work(&host, &mut policy);
    // The item answers 404 whatever the listing says.
    host.script(Some(Method::Get), "/library/metadata/108", Reply::Response(status_response(404, "")), 10);
    host.enqueue_now("12");
    host.clear_requests();
    work(&host, &mut policy);
    // The refresh, the file= filter and the title search each find 108
    // again, and each time it answers 404.
    assert_eq!(
        host.request_lines(),
        vec![
            "GET /library/metadata/108",
            "GET /library/sections/1/all",
            "GET /library/metadata/108",
            "GET /library/sections/1/all",
            "GET /library/metadata/108",
            "GET /library/sections/1/all",
            "GET /library/metadata/108",
        ]
    );
    assert_eq!(host.requests()[3].query_value("file"), Some(PATH));
    assert_eq!(host.requests()[5].query_value("title"), Some("Scene A"));
    let jobs = host.jobs();
    assert_eq!(jobs.len(), 1);
    assert!(jobs[0].last_error.as_deref().unwrap().starts_with("not-in-plex"));
}

#[test]
fn a_503_is_given_back_without_using_an_attempt_then_syncs() {
    let (host, mut policy) = setup();
    host.script(None, "/library/sections", Reply::Response(status_response(503,
        r#"<Response code="503" title="Maintenance" status="Plex Media Server is currently running database migrations."/>"#)), 1);
    let now = host.now();
    let summary = work(&host, &mut policy);
    assert!(summary.contains("trying again in") && summary.contains("not counted as an attempt"), "{summary}");
    assert!(
        summary.contains("Plex answered 503 on GET /library/sections (starting up or running database migrations)"),
        "{summary}"
    );
    let jobs = host.jobs();
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    assert_eq!(job.attempt, 0, "a migration is not the job's fault");
    assert!(!job.running);
    assert!(job.not_before_ms > now, "retry time must be in the future");
    assert!(job.not_before_ms <= now + 15_000, "first plex-starting delay is at most 15 s");
    // Not due yet: idle until then.
    assert_eq!(policy.step(&host), Ok(StepOutcome::Idle(Some(job.not_before_ms))));
    host.set_now(job.not_before_ms);
    let summary = work(&host, &mut policy);
    assert!(summary.contains("synced"), "{summary}");
    assert!(host.jobs().is_empty());
}

#[test]
fn transient_failures_dead_letter_after_max_retries() {
    let (host, mut policy) = configured(r#"{"max_retries":3}"#);
    host.script(None, "/library/sections", Reply::Response(status_response(502, "bad gateway")), 100);
    for attempt in 1..=3 {
        work(&host, &mut policy);
        if attempt < 3 {
            let job = &host.jobs()[0];
            assert_eq!(job.attempt, attempt);
            assert!(job.last_error.as_deref().unwrap().starts_with("plex-overloaded: Plex answered 502"));
            host.set_now(job.not_before_ms);
        }
    }
    assert!(host.jobs().is_empty());
    let dead = host.dead();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].info.error_class, "plex-overloaded");
    assert!(dead[0].info.detail.contains("GET /library/sections → 502 bad gateway"), "{}", dead[0].info.detail);
    assert!(dead[0].info.detail.contains("attempt 3"));
    assert!(host.logs().iter().any(|(l, m)| *l == LogLevel::Warn && m.contains("after 3 attempts, dead-lettered")));
}

#[test]
fn a_refused_connection_gives_the_job_back_without_counting() {
    let (host, mut policy) = setup();
    host.script(None, "/", Reply::Transport(TransportError::Refused("127.0.0.1:32400".into())), 1);
    let now = host.now();
    let summary = work(&host, &mut policy);
    assert!(summary.contains("Plex could not be reached: connection refused (127.0.0.1:32400)"), "{summary}");
    let job = &host.jobs()[0];
    assert_eq!(job.attempt, 0);
    assert!(job.not_before_ms <= now + 5_000);
    assert!(host.dead().is_empty());
}

#[test]
fn malformed_json_is_transient() {
    let (host, mut policy) = setup();
    host.script(None, "/library/metadata/", Reply::Response(status_response(200, "<html>oops")), 1);
    work(&host, &mut policy);
    let job = &host.jobs()[0];
    assert!(job.last_error.as_deref().unwrap().starts_with("plex-malformed-response"));
    assert_eq!(job.attempt, 1);
}

#[test]
fn bad_request_dead_letters_at_once_with_the_request() {
    let (host, mut policy) = setup();
    host.script(Some(Method::Put), "/library/sections/1/all", Reply::Response(status_response(400, "Bad Request")), 1);
    work(&host, &mut policy);
    assert!(host.jobs().is_empty());
    let dead = host.dead();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempt, 1);
    assert_eq!(dead[0].info.error_class, "plex-rejected-request");
    let detail = &dead[0].info.detail;
    assert!(
        detail.starts_with("PUT /library/sections/1/all?type=1&id=108&title.value=Scene A&title.locked=1"),
        "{detail}"
    );
    assert!(detail.contains("→ 400"), "{detail}");
}

#[test]
fn long_values_are_cut_in_the_dead_letter_detail() {
    let (host, mut policy) = setup();
    let mut s = scene("12", "Scene A", PATH);
    s.details = Some("word ".repeat(1000));
    host.add_scene(s);
    host.script(Some(Method::Put), "/", Reply::Response(status_response(400, "")), 1);
    work(&host, &mut policy);
    let detail = &host.dead()[0].info.detail;
    let summary = detail.split("summary.value=").nth(1).unwrap();
    let value = summary.split('&').next().unwrap();
    assert!(value.chars().count() <= 201, "{}", value.len());
}

#[test]
fn a_rejected_token_pauses_everything_without_using_attempts() {
    let (host, mut policy) = configured(r#"{"max_retries":1}"#);
    for id in ["13", "14"] {
        host.add_scene(scene(id, "Other", "/data/Movies/other.mkv"));
        host.enqueue_now(id);
    }
    host.script(
        None,
        "/library/sections",
        Reply::Response(status_response(401, "<html><h1>401 Unauthorized</h1></html>")),
        1,
    );
    let t0 = host.now();
    let summary = work(&host, &mut policy);
    assert!(summary.contains("Plex rejected the token (HTTP 401)"), "{summary}");
    let message = "Plex rejected the token (HTTP 401). Syncing is paused and nothing is lost: 3 changes are waiting. Check plex_token in the plugin settings; stash2plex retries by itself every 5 minutes.";
    assert!(host.logs().iter().any(|(l, m)| *l == LogLevel::Error && m == message), "{:?}", host.logs());
    // Paused: no claim, no request, no attempt used.
    host.clear_requests();
    for _ in 0..3 {
        assert_eq!(policy.step(&host), Ok(StepOutcome::Idle(Some(t0 + 300_000))));
    }
    assert!(host.requests().is_empty());
    assert!(host.jobs().iter().all(|j| j.attempt == 0 && !j.running), "{:?}", host.jobs());
    // Five minutes later: one cheap check, still rejected.
    host.set_now(t0 + 300_000);
    host.script(None, "/library/sections", Reply::Response(status_response(401, "")), 1);
    assert_eq!(policy.step(&host), Ok(StepOutcome::Idle(Some(t0 + 600_000))));
    assert_eq!(host.request_lines(), vec!["GET /library/sections"]);
    assert!(host.logged("Plex still rejects the token (HTTP 401); syncing stays paused (3 change(s) waiting)"));
    // The plain-words error is logged once per pause, not per check.
    assert_eq!(host.logs().iter().filter(|(_, m)| m == message).count(), 1);
    // Never dead-lettered, even with max_retries 1.
    assert!(host.dead().is_empty());
    // A new drain (a fresh instance) checks at once: the token was fixed.
    let mut fresh = Policy::new();
    fresh.configure(&host, &host_settings(r#"{"max_retries":1}"#).unwrap()).unwrap();
    host.clear_requests();
    let summary = work(&host, &mut fresh);
    assert_eq!(summary, "token check GET /library/sections: Plex accepts the token; syncing resumes");
    assert!(host.logged("Plex accepts the token again; syncing resumes (it was paused for 5m 0s)"));
    while host.jobs().iter().any(|j| j.not_before_ms <= host.now()) {
        work(&host, &mut fresh);
    }
    assert!(host.dead().is_empty());
    assert!(host.jobs().iter().all(|j| j.attempt == 0), "{:?}", host.jobs());
}

#[test]
fn not_in_plex_waits_on_the_slow_schedule_then_dead_letters() {
    let (host, mut policy) = setup();
    host.add_scene(scene("12", "Scene A", "/data/Movies/not scanned yet.mkv"));
    let now = host.now();
    work(&host, &mut policy);
    let job = &host.jobs()[0];
    assert!(job.not_before_ms <= now + 30_000);
    assert!(job.last_error.as_deref().unwrap().contains("not in Plex yet"));
    assert!(
        host.logged("not in Plex yet: no item in library \"Movies\" has the file /data/Movies/not scanned yet.mkv")
    );
    for _ in 2..=12 {
        let job = &host.jobs()[0];
        host.set_now(job.not_before_ms);
        work(&host, &mut policy);
    }
    let dead = host.dead();
    assert_eq!(dead.len(), 1, "dead-lettered after 12 attempts");
    assert_eq!(dead[0].attempt, 12);
    assert_eq!(dead[0].info.error_class, "not-in-plex");
}

#[test]
fn path_outside_every_library_says_so() {
    let (host, mut policy) = setup();
    host.add_scene(scene("12", "Scene A", "/elsewhere/x.mkv"));
    work(&host, &mut policy);
    assert!(host.logged("no Plex library folder contains /elsewhere/x.mkv (libraries searched: Movies, TV Shows)"));
    assert_eq!(host.request_lines(), vec!["GET /library/sections"]);
    assert_eq!(host.jobs().len(), 1);
}

#[test]
fn plex_library_restricts_sections() {
    let (host, mut policy) = configured(r#"{"plex_library":"tv shows, Nope"}"#);
    work(&host, &mut policy);
    assert!(host.logged("plex_library names not found in Plex as movie or TV libraries: nope"));
    assert!(host.logged("no Plex library folder contains"));
    assert_eq!(host.request_lines(), vec!["GET /library/sections"]);
}

#[test]
fn ambiguous_match_dead_letters_when_strict() {
    let (host, mut policy) = setup();
    host.plex.borrow_mut().add_item("1", "107", "Dup", PATH);
    work(&host, &mut policy);
    let dead = host.dead();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].info.error_class, "ambiguous-match");
    assert!(dead[0].info.message.contains("ratingKeys 107, 108"), "{}", dead[0].info.message);
    assert!(host.request_lines().iter().all(|l| !l.starts_with("PUT")));
}

#[test]
fn ambiguous_match_picks_the_lowest_when_not_strict() {
    let (host, mut policy) = configured(r#"{"strict_matching":false}"#);
    host.plex.borrow_mut().add_item("1", "107", "Dup", PATH);
    work(&host, &mut policy);
    assert!(host.dead().is_empty());
    assert_eq!(host.plex.borrow().item("107").unwrap().title, "Scene A");
    assert_eq!(host.plex.borrow().item("108").unwrap().title, "Old title");
    assert!(host.logs().iter().any(|(l, m)| *l == LogLevel::Warn && m.contains("using 107")));
}

#[test]
fn episodes_in_show_sections_use_type_4() {
    let (host, mut policy) = setup();
    let ep = "/data/TV/Show/S01E01.mkv";
    host.plex.borrow_mut().add_item("2", "500", "Pilot", ep);
    host.add_scene(scene("12", "Pilot!", ep));
    work(&host, &mut policy);
    let requests = host.requests();
    assert_eq!(requests[1].path, "/library/sections/2/all");
    assert_eq!(requests[1].query_value("type"), Some("4"));
    assert_eq!(requests[3].query_value("type"), Some("4"));
    assert_eq!(host.plex.borrow().item("500").unwrap().title, "Pilot!");
}

#[test]
fn deleted_scene_and_scene_without_file_complete_without_plex() {
    let (host, mut policy) = setup();
    host.enqueue_now("99"); // unknown to Stash
    let mut s = scene("12", "No file", PATH);
    s.files.clear();
    host.add_scene(s);
    work(&host, &mut policy);
    work(&host, &mut policy);
    assert!(host.jobs().is_empty());
    assert!(host.dead().is_empty());
    assert!(host.requests().is_empty());
    assert!(host.logged("scene 12 has no file; nothing to sync in Plex"));
    assert!(host.logged("scene 99 no longer exists in Stash"));
}

#[test]
fn stash_failures() {
    let (host, mut policy) = setup();
    host.stash_error("12", StashError::Unreachable("connection refused".into()));
    let summary = work(&host, &mut policy);
    assert!(summary.contains("(not counted as an attempt): Stash could not answer"), "{summary}");
    let job = host.jobs()[0].clone();
    assert_eq!(job.attempt, 0, "Stash being away uses no attempt");
    assert!(job.not_before_ms <= host.now() + 10_000);

    host.set_now(job.not_before_ms);
    host.stash_error("12", StashError::Unauthorized("401".into()));
    let now = host.now();
    work(&host, &mut policy);
    let job = host.jobs()[0].clone();
    assert_eq!(job.not_before_ms, now + 60_000);
    assert_eq!(job.attempt, 0, "a Stash credential problem uses no attempt either");
    assert!(host.logged("Stash rejected the plugin's credentials"));
    assert!(host.requests().is_empty());
}

#[test]
fn an_image_stash_cannot_serve_because_it_is_away_waits_but_a_missing_one_does_not() {
    let (host, mut policy) = setup();
    let mut s = scene("12", "Scene A", PATH);
    s.screenshot_url = Some("http://stash/scene/12/screenshot?t=1".into());
    host.add_scene(s);
    host.image_error(Some(StashError::Unreachable("connection refused".into())));
    let summary = work(&host, &mut policy);
    assert!(summary.contains("(not counted as an attempt): Stash could not answer"), "{summary}");
    let job = host.jobs()[0].clone();
    assert_eq!(job.attempt, 0, "Stash being away uses no attempt");

    // Stash answers, but the image is not there: the job finishes without it.
    host.image_error(Some(StashError::Malformed("404".into())));
    host.set_now(job.not_before_ms);
    let summary = work(&host, &mut policy);
    assert!(summary.contains("poster not synced: the Stash image could not be read"), "{summary}");
    assert!(host.jobs().is_empty());
    assert!(host.dead().is_empty());
}

#[test]
fn an_image_record_of_an_older_version_is_used_and_moved_into_its_shard() {
    let (host, mut policy) = setup();
    let url = "http://stash/scene/12/screenshot?t=1";
    let mut s = scene("12", "Scene A", PATH);
    s.screenshot_url = Some(url.into());
    host.add_scene(s);
    // An older version kept one key per scene: poster and background from
    // this screenshot are already on item 108.
    let slot = serde_json::json!({"url": url, "sha1": "a".repeat(40)});
    let old = serde_json::json!({"rk": "108", "poster": slot, "background": slot}).to_string();
    host.state_set(&[crate::host::StateWrite { key: "img/12".into(), value: Some(old) }]).unwrap();
    let summary = work(&host, &mut policy);
    assert!(summary.contains("synced"), "{summary}");
    let image_requests: Vec<String> =
        host.request_lines().into_iter().filter(|l| l.contains("/posters") || l.contains("/arts")).collect();
    assert!(image_requests.is_empty(), "the kept record says the images are there: {image_requests:?}");
    assert_eq!(host.state_value("img/12"), None, "the old key is gone");
    let shard = host.state_value(&images::shard_key("12")).expect("the record is in its shard");
    let kept: serde_json::Value = serde_json::from_str(&shard).unwrap();
    assert_eq!(kept["12"]["rk"], "108", "{shard}");
    assert_eq!(kept["12"]["poster"]["url"], url, "{shard}");
}

#[test]
fn sync_master_off_writes_nothing() {
    let (host, mut policy) = configured(r#"{"sync_master":false}"#);
    work(&host, &mut policy);
    assert!(host.requests().is_empty());
    assert!(host.jobs().is_empty());
    assert!(host.logged("field sync is off"));
}

#[test]
fn paths_are_obfuscated_in_every_log_line() {
    let (host, mut policy) = setup();
    host.obfuscate_paths(true);
    host.add_scene(scene("12", "Scene A", "/data/Movies/secret name.mkv"));
    work(&host, &mut policy); // not in Plex
    host.add_scene(scene("12", "Scene A", "/elsewhere/secret name.mkv"));
    host.set_now(host.jobs()[0].not_before_ms);
    work(&host, &mut policy); // no section
    assert!(!host.logs().is_empty());
    for (_, line) in host.logs() {
        assert!(!line.contains("secret"), "{line}");
    }
    assert!(host.logged("/xxx/xxx/xxx"));
    assert!(!host.jobs()[0].last_error.as_deref().unwrap().contains("secret"));
}

#[test]
fn big_libraries_are_listed_over_several_steps() {
    let (host, mut policy) = setup();
    let n = (MAX_PAGES_PER_STEP as usize) * 200 + 50;
    {
        let mut plex = host.plex.borrow_mut();
        for i in 0..n {
            plex.add_item("1", &format!("{}", 10_000 + i), "x", &format!("/data/Movies/b{i}.mkv"));
        }
    }
    host.add_scene(scene("12", "Last", &format!("/data/Movies/b{}.mkv", n - 1)));
    let summary = work(&host, &mut policy);
    assert!(summary.contains("still listing"), "{summary}");
    assert_eq!(host.requests().len(), 1 + MAX_PAGES_PER_STEP as usize);
    let job = &host.jobs()[0];
    assert_eq!(job.attempt, 0, "a release does not count as an attempt");
    assert_eq!(job.not_before_ms, host.now());
    host.clear_requests();
    work(&host, &mut policy);
    let lines = host.request_lines();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(host.requests()[0].header_value("X-Plex-Container-Start"), Some("5000"));
    assert!(host.jobs().is_empty());
}

#[test]
fn long_steps_renew_the_lease() {
    let (host, mut policy) = setup();
    host.set_request_duration(40_000);
    work(&host, &mut policy);
    // 4 requests × 40 s: renewed before the 3rd (80 s) request at least.
    assert!(host.renewals() >= 1);
    assert!(host.jobs().is_empty(), "completed with the renewed lease");
}

#[test]
fn lease_lost_before_recording_the_outcome() {
    let (host, mut policy) = setup();
    host.steal_leases_at_request(4);
    let summary = work(&host, &mut policy);
    assert!(summary.contains("lease was lost before the outcome could be recorded"), "{summary}");
    // The other drainer still owns the job: nothing was completed.
    assert_eq!(host.jobs().len(), 1);
    assert!(host.completed().is_empty());
}

#[test]
fn lease_lost_mid_job_stops_the_job() {
    let (host, mut policy) = setup();
    host.set_request_duration(70_000);
    host.steal_leases_at_request(1);
    let summary = work(&host, &mut policy);
    assert!(summary.contains("lease was lost to another drainer"), "{summary}");
    // The renewal before the second request failed: no further requests.
    assert_eq!(host.request_lines(), vec!["GET /library/sections"]);
    assert_eq!(host.jobs().len(), 1);
}

#[test]
fn a_404_on_the_section_list_is_not_fatal() {
    let (host, mut policy) = setup();
    host.script(None, "/library/sections", Reply::Response(status_response(404, "")), 1);
    work(&host, &mut policy);
    assert!(host.dead().is_empty());
    assert!(host.jobs()[0].last_error.as_deref().unwrap().contains("check that plex_url"));
}

#[test]
fn other_client_errors_are_permanent() {
    let (host, mut policy) = setup();
    host.script(Some(Method::Put), "/", Reply::Response(status_response(414, "URI Too Long")), 1);
    work(&host, &mut policy);
    let dead = host.dead();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].info.error_class, "plex-rejected-request");
    assert!(dead[0].info.detail.contains("→ 414 URI Too Long"));
}

#[test]
fn a_section_that_disappeared_is_read_again() {
    let (host, mut policy) = setup();
    host.script(Some(Method::Get), "/library/sections/1/all", Reply::Response(status_response(404, "")), 1);
    work(&host, &mut policy);
    let job = host.jobs()[0].clone();
    assert!(job.last_error.as_deref().unwrap().starts_with("not-in-plex"));
    host.set_now(job.not_before_ms);
    host.clear_requests();
    work(&host, &mut policy);
    // The section list is fetched again before listing.
    assert_eq!(host.request_lines()[0], "GET /library/sections");
    assert!(host.jobs().is_empty());
}

// ---------------------------------------------------------------- reliability

use crate::breaker::Kind;
use crate::resilience::{STATE_KEY, State as ResState};

/// `setup()` plus scenes 1..=n, each with its own Plex item, all queued.
fn setup_many(n: u32, settings: &str) -> (FakeHost, Policy) {
    let (host, mut policy) = setup();
    for i in 1..=n {
        let path = format!("/data/Movies/s{i}.mkv");
        host.plex.borrow_mut().add_item("1", &format!("{}", 200 + i), "Old", &path);
        host.add_scene(scene(&i.to_string(), &format!("Scene {i}"), &path));
        host.enqueue_now(&i.to_string());
    }
    let inner = settings.trim().trim_start_matches('{').trim_end_matches('}');
    policy.configure(&host, &host_settings(&core_plus(inner)).unwrap()).unwrap();
    (host, policy)
}

fn refuse_everything(host: &FakeHost) {
    host.script(None, "/", Reply::Transport(TransportError::Refused("127.0.0.1:32400".into())), u32::MAX);
}

fn saved_state(host: &FakeHost) -> ResState {
    serde_json::from_str(&host.state_value(STATE_KEY).expect("state saved")).unwrap()
}

/// Drive steps the way the simulator does (`wait-ms` advances the clock,
/// `idle(t)` jumps to t) until `idle(None)` or `max` steps; `before` runs
/// before each step. One line per step: seconds since the start and the
/// outcome.
fn drive(host: &FakeHost, policy: &mut Policy, max: usize, mut before: impl FnMut(&FakeHost)) -> Vec<String> {
    let t0 = host.now();
    let mut trace = Vec::new();
    for _ in 0..max {
        before(host);
        let at = (host.now() - t0) as f64 / 1000.0;
        match policy.step(host) {
            Ok(StepOutcome::Worked(s)) => trace.push(format!("{at:.3} {s}")),
            Ok(StepOutcome::WaitMs(ms)) => {
                trace.push(format!("{at:.3} wait {ms}"));
                host.advance(i64::from(ms));
            }
            Ok(StepOutcome::Idle(Some(t))) => {
                trace.push(format!("{at:.3} idle until {:.3}", (t - t0) as f64 / 1000.0));
                assert!(t > host.now(), "idle(Some(t)) must be in the future: {t} <= {}", host.now());
                host.set_now(t);
            }
            Ok(StepOutcome::Idle(None)) => {
                trace.push(format!("{at:.3} idle"));
                return trace;
            }
            Err(e) => panic!("step failed: {e}"),
        }
    }
    trace
}

#[test]
fn an_outage_releases_jobs_then_only_probes_then_trials_then_ramps() {
    let (host, mut policy) = setup_many(8, "{}");
    refuse_everything(&host);
    let t0 = host.now();
    // Until the breaker opens: five failures, each job given back uncounted.
    let mut steps = 0;
    loop {
        drive(&host, &mut policy, 1, |_| {});
        steps += 1;
        assert!(steps < 50);
        if saved_state(&host).breaker.kind() == Kind::Open {
            break;
        }
    }
    assert_eq!(host.request_lines().len(), 5, "one refused request per failed job");
    assert!(host.dead().is_empty());
    assert!(host.jobs().iter().all(|j| j.attempt == 0), "no attempt used: {:?}", host.jobs());
    assert!(host.logged(
        "Plex is not answering properly (5 failures in a row; last error: Plex could not be reached: connection refused"
    ));
    let state = saved_state(&host);
    let until = state.breaker.open_until().unwrap();
    assert!(until - host.now() <= 30_000 && until > host.now());

    // While open: only GET /identity, on a growing schedule.
    host.clear_requests();
    let trace = drive(&host, &mut policy, 400, |h| {
        if h.now() >= t0 + 600_000 {
            h.clear_scripts();
        }
    });
    let lines = host.request_lines();
    let probes: Vec<i64> = host
        .requests()
        .iter()
        .zip(trace.iter().filter(|l| l.contains("probe")))
        .map(|(_, l)| (l.split(' ').next().unwrap().parse::<f64>().unwrap() * 1000.0) as i64)
        .collect();
    let first_other = lines.iter().position(|l| l != "GET /identity").unwrap();
    assert!(first_other >= 6, "{lines:?}");
    assert!(lines[..first_other].iter().all(|l| l == "GET /identity"));
    // Failed probes come every 3–4 s for the outage's first five minutes,
    // then their gaps grow (jitter keeps each within 75–100 % of nominal)
    // up to a minute.
    let start = state.outages.outages[0].start_ms - t0;
    let gaps: Vec<(i64, i64)> = probes.windows(2).map(|w| (w[0] - start, w[1] - w[0])).collect();
    let (young, old): (Vec<_>, Vec<_>) = gaps.iter().partition(|(age, _)| *age < 300_000);
    assert!(young.len() >= 60, "{trace:#?}");
    assert!(young.iter().all(|(_, gap)| (3_000..=4_000).contains(gap)), "{young:?}");
    assert!(old.len() >= 4, "{trace:#?}");
    for w in old.windows(2) {
        assert!(w[1].1 * 4 >= w[0].1 * 3 && w[1].1 <= 60_000, "{old:?}");
    }
    assert!(old.iter().any(|(_, gap)| *gap > 45_000), "backs off to a minute: {old:?}");
    // Recovery: half-open trials, then closed, then the ramp paces at 1/s.
    assert!(host.logged("Plex answers again; trying up to 3 change(s)"));
    assert!(host.logged("Plex has recovered after"));
    assert!(trace.iter().any(|l| l.ends_with("wait 2000")), "1 request/s after recovery: {trace:#?}");
    assert!(host.jobs().is_empty(), "everything synced: {:?}\n{trace:#?}", host.jobs());
    assert!(host.dead().is_empty());
    let state = saved_state(&host);
    assert_eq!(state.breaker.kind(), Kind::Closed);
    let outage = &state.outages.outages[0];
    assert_eq!(state.outages.outages.len(), 1);
    assert!(outage.end_ms.is_some());
    assert!(outage.jobs_affected >= 8, "{outage:?}");
    // Every job outcome carried the reliability state in the same call.
    let calls = host.state_calls();
    assert!(calls.iter().filter(|(c, _)| *c != "state-set").count() >= 13);
    for (call, keys) in &calls {
        assert_eq!(keys, &vec![STATE_KEY.to_string()], "{call}");
    }
}

#[test]
fn the_state_rides_with_the_outcome_it_reflects() {
    let (host, mut policy) = setup();
    host.script(None, "/", Reply::Transport(TransportError::Refused("x".into())), 1);
    work(&host, &mut policy);
    // The release that gave the job back also wrote the breaker's count.
    assert_eq!(host.state_calls(), vec![("release", vec![STATE_KEY.to_string()])]);
    assert_eq!(saved_state(&host).breaker.consecutive_failures, 1);
    host.set_now(host.jobs()[0].not_before_ms);
    work(&host, &mut policy);
    assert_eq!(host.state_calls()[1], ("complete", vec![STATE_KEY.to_string()]));
    assert_eq!(saved_state(&host).breaker.consecutive_failures, 0);
}

#[test]
fn retry_after_on_429_is_honoured() {
    let mut r = status_response(429, "Too Many Requests");
    r.headers.push(("retry-after".into(), "120".into()));
    let (host, mut policy) = setup();
    host.script(Some(Method::Put), "/", Reply::Response(r), 1);
    let now = host.now();
    work(&host, &mut policy);
    let job = &host.jobs()[0];
    assert!(job.not_before_ms >= now + 120_000, "{} < {}", job.not_before_ms, now + 120_000);
    assert_eq!(job.attempt, 1);
    assert!(job.last_error.as_deref().unwrap().starts_with("plex-overloaded: Plex is overloaded (429"));
}

#[test]
fn not_found_never_opens_the_breaker() {
    let (host, mut policy) = setup_many(0, "{}");
    for i in 101..=130 {
        host.add_scene(scene(&i.to_string(), "x", &format!("/data/Movies/unscanned{i}.mkv")));
        host.enqueue_now(&i.to_string());
    }
    for _ in 0..31 {
        work(&host, &mut policy);
    }
    let state = saved_state(&host);
    assert_eq!(state.breaker.kind(), Kind::Closed);
    assert_eq!(state.breaker.consecutive_failures, 0);
    assert!(state.outages.outages.is_empty());
    assert!(host.request_lines().iter().all(|l| l != "GET /identity"));
    assert_eq!(host.jobs().len(), 30);
}

#[test]
fn the_retry_budget_limits_a_burst_of_retries() {
    let (host, mut policy) = setup_many(0, "{}");
    for i in 101..=120 {
        host.add_scene(scene(&i.to_string(), "x", &format!("/data/Movies/unscanned{i}.mkv")));
        host.enqueue_now(&i.to_string());
    }
    let t0 = host.now();
    // 21 first attempts (scene 12 syncs, 20 are not in Plex yet).
    for _ in 0..21 {
        work(&host, &mut policy);
    }
    // All 20 retries fall due within the same minute.
    host.set_now(t0 + 30_000);
    let mut budget_releases = 0;
    let mut sent = 0;
    for _ in 0..20 {
        let line = work(&host, &mut policy);
        if line.contains("retry budget used up") {
            budget_releases += 1;
        } else {
            sent += 1;
        }
    }
    // 21 × 20 % + 6 = 10 retries may go; the rest wait, attempts intact.
    assert_eq!(sent, 10);
    assert_eq!(budget_releases, 10);
    assert_eq!(host.jobs().iter().filter(|j| j.attempt == 1).count(), 10);
    assert!(host.jobs().iter().filter(|j| j.attempt == 1).all(|j| j.not_before_ms >= t0 + 35_000));
}

#[test]
fn jobs_a_killed_drainer_left_claimed_are_not_retries_for_the_budget() {
    let (host, mut policy) = setup_many(20, "{}");
    // A drainer claimed all 20 (scene 12 is one of them) as a batch and was
    // killed before any outcome; its leases run out.
    let abandoned: Vec<_> = std::iter::from_fn(|| host.claim_for_test()).collect();
    assert_eq!(abandoned.len(), 20);
    host.advance(61_000);
    // The next drain takes them up: 20 second attempts in one minute,
    // against a budget of 6 retries, and none is held back.
    for _ in 0..20 {
        let line = work(&host, &mut policy);
        assert!(!line.contains("retry budget used up"), "{line}");
    }
    assert!(host.jobs().is_empty(), "all synced: {:?}", host.jobs());
    assert!(host.dead().is_empty());
}

#[test]
fn open_with_only_waiting_jobs_is_idle_until_the_probe() {
    let (host, mut policy) = setup_many(4, "{}");
    refuse_everything(&host);
    for _ in 0..5 {
        work(&host, &mut policy);
    }
    let state = saved_state(&host);
    let until = state.breaker.open_until().unwrap();
    // Whatever is left is released past `until` or due earlier.
    let jobs = host.jobs();
    let next_due = jobs.iter().map(|j| j.not_before_ms).filter(|&t| t > host.now()).min();
    if jobs.iter().all(|j| j.not_before_ms > host.now()) {
        assert_eq!(policy.step(&host), Ok(StepOutcome::Idle(next_due.map(|d| d.max(until)))));
    } else {
        assert_eq!(policy.step(&host), Ok(StepOutcome::WaitMs((until - host.now()) as u32)));
    }
    // A fresh instance (another drain) sees the same open breaker.
    let mut fresh = Policy::new();
    fresh.configure(&host, &host_settings(CORE_FIELDS).unwrap()).unwrap();
    host.clear_requests();
    host.set_now(until - 1);
    let out = fresh.step(&host).unwrap();
    assert!(matches!(out, StepOutcome::WaitMs(1) | StepOutcome::Idle(Some(_))), "{out:?}");
    assert!(host.requests().is_empty());
}

#[test]
fn a_failed_trial_reopens_for_longer_and_keeps_the_job() {
    let (host, mut policy) = setup_many(6, "{}");
    refuse_everything(&host);
    for _ in 0..5 {
        work(&host, &mut policy);
    }
    let first_until = saved_state(&host).breaker.open_until().unwrap();
    host.set_now(first_until);
    // The probe passes but the trial's request is refused.
    host.clear_scripts();
    host.script(None, "/library", Reply::Transport(TransportError::Reset("x".into())), u32::MAX);
    let probe = work(&host, &mut policy);
    assert!(probe.starts_with("probe GET /identity: Plex answers"), "{probe}");
    assert_eq!(saved_state(&host).breaker.kind(), Kind::HalfOpen);
    let trial = work(&host, &mut policy);
    assert!(trial.contains("the change waits for Plex to recover"), "{trial}");
    let state = saved_state(&host);
    assert_eq!(state.breaker.trips, 2);
    assert_eq!(state.breaker.open_until(), Some(host.now() + 8_000), "second trip: twice the first 4 s");
    assert_eq!(state.outages.outages.len(), 1, "a re-trip is the same outage");
    assert_eq!(state.outages.outages[0].trips, 2);
    assert!(host.logged("Plex failed again while recovering (a trial request failed)"));
    assert!(host.dead().is_empty());
    assert!(host.jobs().iter().all(|j| j.attempt == 0));
}

#[test]
fn a_manual_open_blocks_plex_until_closed() {
    let (host, mut policy) = setup();
    let t0 = host.now();
    policy.run_task(&host, "breaker_open", r#"{"minutes":10}"#).unwrap();
    // A pause by hand is not an outage to wait out: the drain goes idle
    // until the pause ends (no probes).
    assert_eq!(policy.step(&host), Ok(StepOutcome::Idle(Some(t0 + 600_000))));
    assert!(host.requests().is_empty());
    assert!(policy.status(&host).unwrap().summary.contains("opened by hand"));
    policy.run_task(&host, "breaker_close", "{}").unwrap();
    let line = work(&host, &mut policy);
    assert!(line.contains("synced"), "{line}");
}

#[test]
fn corrupt_state_is_replaced_not_fatal() {
    let (host, mut policy) = setup();
    host.state_set(&[crate::host::StateWrite { key: STATE_KEY.into(), value: Some("{garbage".into()) }]).unwrap();
    let line = work(&host, &mut policy);
    assert!(line.contains("synced"), "{line}");
    assert!(host.logged("The saved reliability state could not be read"));
    assert_eq!(saved_state(&host).v, 1);
}

#[test]
fn golden_trace_of_a_small_outage() {
    let (host, mut policy) = setup_many(2, "{}");
    host.seed(42);
    refuse_everything(&host);
    let t0 = host.now();
    let trace = drive(&host, &mut policy, 60, |h| {
        if h.now() >= t0 + 40_000 {
            h.clear_scripts();
        }
    });
    let shown: Vec<String> = trace.iter().map(|l| l.replace(PATH, "A")).collect();
    let golden = vec![
        "0.000 scene 12 (A): trying again in 4 s (not counted as an attempt): Plex could not be reached: connection refused (127.0.0.1:32400) (1 Plex request)",
        "0.000 scene 1 (/data/Movies/s1.mkv): trying again in 2 s (not counted as an attempt): Plex could not be reached: connection refused (127.0.0.1:32400) (1 Plex request)",
        "0.000 scene 2 (/data/Movies/s2.mkv): trying again in 6 s (not counted as an attempt): Plex could not be reached: connection refused (127.0.0.1:32400) (1 Plex request)",
        "0.000 idle until 1.599",
        "1.599 scene 1 (/data/Movies/s1.mkv): trying again in 14 s (not counted as an attempt): Plex could not be reached: connection refused (127.0.0.1:32400) (1 Plex request)",
        "1.599 idle until 3.708",
        "3.708 scene 12 (A): Plex is unavailable (Plex could not be reached: connection refused (127.0.0.1:32400)); the change waits for Plex to recover (next check in 4s) (1 Plex request)",
        "3.708 idle until 7.708",
        "7.708 probe GET /identity: plex-unavailable; next probe in 3s",
        "7.708 wait 3038",
        "10.746 probe GET /identity: plex-unavailable; next probe in 3s",
        "10.746 wait 3869",
        "14.615 probe GET /identity: plex-unavailable; next probe in 3s",
        "14.615 wait 3218",
        "17.833 probe GET /identity: plex-unavailable; next probe in 3s",
        "17.833 wait 3801",
        "21.634 probe GET /identity: plex-unavailable; next probe in 3s",
        "21.634 wait 3340",
        "24.974 probe GET /identity: plex-unavailable; next probe in 3s",
        "24.974 wait 3619",
        "28.593 probe GET /identity: plex-unavailable; next probe in 3s",
        "28.593 wait 3205",
        "31.798 probe GET /identity: plex-unavailable; next probe in 3s",
        "31.798 wait 3493",
        "35.291 probe GET /identity: plex-unavailable; next probe in 3s",
        "35.291 wait 3513",
        "38.804 probe GET /identity: plex-unavailable; next probe in 3s",
        "38.804 wait 3520",
        "42.324 probe GET /identity: Plex answers (Plex Media Server 1.41.3.9314-a0bfb8370, 3 ms)",
        // Half-open trials claim one job at a time; each write is read back.
        "42.324 scene 2 (/data/Movies/s2.mkv): synced title, summary, originallyAvailableAt, studio to Plex item 202; verified (5 Plex requests)",
        "42.324 scene 12 (A): synced title, summary, originallyAvailableAt, studio to Plex item 108; verified (3 Plex requests)",
        "42.324 scene 1 (/data/Movies/s1.mkv): synced title, summary, originallyAvailableAt, studio to Plex item 201; verified (3 Plex requests)",
        "42.324 idle",
    ];
    assert_eq!(shown, golden, "{shown:#?}");
}

#[test]
fn half_open_with_only_unscanned_changes_closes_instead_of_flapping() {
    let (host, mut policy) = setup_many(0, "{}");
    host.add_scene(scene("12", "Scene A", "/data/Movies/unscanned.mkv"));
    for i in 101..=105 {
        host.add_scene(scene(&i.to_string(), "x", &format!("/data/Movies/unscanned{i}.mkv")));
        host.enqueue_now(&i.to_string());
    }
    refuse_everything(&host);
    for _ in 0..5 {
        work(&host, &mut policy);
    }
    let until = saved_state(&host).breaker.open_until().unwrap();
    host.clear_scripts();
    host.set_now(until);
    // Probe passes; every trial is "not in Plex yet" (not a Plex failure).
    let t = host.now();
    while host.now() <= t + 121_000 {
        drive(&host, &mut policy, 1, |_| {});
    }
    drive(&host, &mut policy, 1, |_| {});
    let state = saved_state(&host);
    assert_eq!(state.breaker.kind(), Kind::Closed);
    assert_eq!(state.breaker.trips, 0);
    assert_eq!(state.outages.outages.len(), 1);
    assert_eq!(state.outages.outages[0].trips, 1, "no phantom re-trips");
    assert!(state.outages.outages[0].end_ms.is_some());
    assert_eq!(host.request_lines().iter().filter(|l| *l == "GET /identity").count(), 1);
}

#[test]
fn jobs_due_together_share_one_stash_lookup_and_one_item_read() {
    // 20 jobs due (scene 12 becomes one of them).
    let (host, mut policy) = setup_many(20, "{}");
    let mut steps = 0;
    while !host.jobs().is_empty() && steps < 100 {
        work(&host, &mut policy);
        steps += 1;
    }
    assert_eq!(host.completed().len(), 20);
    assert_eq!(host.stash_batches(), 1, "one findScenes for the whole batch");
    let item_reads: Vec<String> =
        host.request_lines().into_iter().filter(|l| l.starts_with("GET /library/metadata/")).collect();
    // One read of all 20 items before the first edit, then one read-back
    // per edit.
    assert_eq!(item_reads.len(), 1 + 20, "{item_reads:?}");
    assert_eq!(item_reads[0].matches(',').count(), 19, "{}", item_reads[0]);
    assert_eq!(host.request_lines().iter().filter(|l| l.starts_with("PUT")).count(), 20);
}

#[test]
fn skip_not_found_drops_the_change_quietly() {
    let (host, mut policy) = configured(r#"{"skip_not_found":true}"#);
    host.add_scene(scene("12", "Scene A", "/data/Movies/never scanned.mkv"));
    let summary = work(&host, &mut policy);
    assert!(summary.contains("dropped because skip_not_found is on"), "{summary}");
    assert!(host.jobs().is_empty() && host.dead().is_empty());
}

#[test]
fn a_file_name_in_another_folder_is_refused_when_strict_and_used_when_not() {
    let (host, mut policy) = setup();
    host.add_scene(scene("12", "Scene A", "/data/Movies/moved/Scene A.mkv"));
    work(&host, &mut policy);
    let dead = host.dead();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].info.error_class, "ambiguous-match");
    assert!(dead[0].info.message.contains("strict_matching only accepts exact paths"), "{}", dead[0].info.message);

    let (host, mut policy) = configured(r#"{"strict_matching":false}"#);
    host.add_scene(scene("12", "Scene A", "/data/Movies/moved/Scene A.mkv"));
    let summary = work(&host, &mut policy);
    assert!(summary.contains("Plex item 108") && summary.contains("matched by file name only"), "{summary}");
}

#[test]
fn a_path_map_finds_the_item_under_another_mount() {
    let (host, mut policy) = configured(r#"{"plex_path_map":"/stash/media=>/data/Movies"}"#);
    host.add_scene(scene("12", "Scene A", "/stash/media/Scene A.mkv"));
    let summary = work(&host, &mut policy);
    assert!(summary.contains("synced") && summary.contains("Plex item 108"), "{summary}");
}
