//! Whole-step tests through the fake host.

use super::*;
use crate::host_api::{Method, StepOutcome, TransportError};
use crate::policy::Policy;
use crate::test_support::{FakeHost, Reply, scene, status_response};

const PATH: &str = "/data/Movies/Scene A.mkv";

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
    policy.configure(&host, "{}").unwrap();
    (host, policy)
}

fn configured(settings: &str) -> (FakeHost, Policy) {
    let (host, mut policy) = setup();
    policy.configure(&host, settings).unwrap();
    (host, policy)
}

fn worked(outcome: Result<StepOutcome, String>) -> String {
    match outcome {
        Ok(StepOutcome::Worked(s)) => s,
        other => panic!("expected worked, got {other:?}"),
    }
}

fn query(req: &PlexRequest) -> Vec<(&str, &str)> {
    req.query.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[test]
fn first_sync_sends_four_requests_and_one_locked_put() {
    let (host, mut policy) = setup();
    let summary = worked(policy.step(&host));
    assert_eq!(
        host.request_lines(),
        vec![
            "GET /library/sections",
            "GET /library/sections/1/all",
            "GET /library/metadata/108",
            "PUT /library/sections/1/all",
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
    assert!(summary.contains("scene 12") && summary.contains("4 Plex requests"), "{summary}");
    assert!(host.logged("synced title, summary, originallyAvailableAt, studio to Plex item 108"));
    assert_eq!(policy.step(&host), Ok(StepOutcome::Idle(None)));
}

#[test]
fn unchanged_scene_sends_no_put() {
    let (host, mut policy) = setup();
    worked(policy.step(&host));
    host.clear_requests();
    host.enqueue_now("12");
    let summary = worked(policy.step(&host));
    // Sections and index are cached: one GET to verify the item, no PUT.
    assert_eq!(host.request_lines(), vec!["GET /library/metadata/108"]);
    assert!(summary.contains("already in sync"), "{summary}");
    assert!(host.jobs().is_empty());
    // A fresh instance (new drain) also sends no PUT.
    let mut fresh = Policy::new();
    host.clear_requests();
    host.enqueue_now("12");
    worked(fresh.step(&host));
    assert!(host.request_lines().iter().all(|l| !l.starts_with("PUT")));
}

#[test]
fn a_changed_field_is_the_only_one_written() {
    let (host, mut policy) = setup();
    worked(policy.step(&host));
    let mut s = scene("12", "Scene A", PATH);
    s.title = Some("Renamed".into());
    host.add_scene(s);
    host.enqueue_now("12");
    host.clear_requests();
    worked(policy.step(&host));
    let put = host.requests().pop().unwrap();
    assert_eq!(put.method, Method::Put);
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
    worked(policy.step(&host));
    host.enqueue_now("13");
    host.clear_requests();
    worked(policy.step(&host));
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
    worked(policy.step(&host));
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
    worked(policy.step(&host));
    assert_eq!(
        host.request_lines(),
        vec![
            "GET /library/metadata/108",
            "GET /library/sections/1/all",
            "GET /library/metadata/300",
            "PUT /library/sections/1/all",
        ]
    );
    assert_eq!(host.plex.borrow().item("300").unwrap().title, "Scene A v2");
    assert!(host.jobs().is_empty());
}

#[test]
fn stale_twice_waits_for_plex() {
    let (host, mut policy) = setup();
    worked(policy.step(&host));
    // The item answers 404 whatever the listing says.
    host.script(Some(Method::Get), "/library/metadata/108", Reply::Response(status_response(404, "")), 2);
    host.enqueue_now("12");
    host.clear_requests();
    worked(policy.step(&host));
    assert_eq!(
        host.request_lines(),
        vec!["GET /library/metadata/108", "GET /library/sections/1/all", "GET /library/metadata/108",]
    );
    let jobs = host.jobs();
    assert_eq!(jobs.len(), 1);
    assert!(jobs[0].last_error.as_deref().unwrap().starts_with("not-in-plex"));
}

#[test]
fn retry_on_503_with_backoff_then_success() {
    let (host, mut policy) = setup();
    host.script(None, "/library/sections", Reply::Response(status_response(503,
        r#"<Response code="503" title="Maintenance" status="Plex Media Server is currently running database migrations."/>"#)), 1);
    let now = host.now();
    let summary = worked(policy.step(&host));
    assert!(summary.contains("retrying"), "{summary}");
    let jobs = host.jobs();
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    assert_eq!(job.attempt, 1);
    assert!(job.lease.is_none());
    assert!(job.not_before_ms > now, "retry time must be in the future");
    assert!(job.not_before_ms <= now + 5_000, "first transient delay is at most 5 s");
    assert!(job.last_error.as_deref().unwrap().starts_with("plex-unavailable: Plex answered 503"));
    // Not due yet: idle until then.
    assert_eq!(policy.step(&host), Ok(StepOutcome::Idle(Some(job.not_before_ms))));
    host.set_now(job.not_before_ms);
    let summary = worked(policy.step(&host));
    assert!(summary.contains("synced"), "{summary}");
    assert!(host.jobs().is_empty());
}

#[test]
fn transient_failures_dead_letter_after_max_retries() {
    let (host, mut policy) = configured(r#"{"max_retries":3}"#);
    host.script(None, "/library/sections", Reply::Response(status_response(502, "bad gateway")), 100);
    for attempt in 1..=3 {
        worked(policy.step(&host));
        if attempt < 3 {
            let job = &host.jobs()[0];
            assert_eq!(job.attempt, attempt);
            host.set_now(job.not_before_ms);
        }
    }
    assert!(host.jobs().is_empty());
    let dead = host.dead();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].info.error_class, "plex-unavailable");
    assert!(dead[0].info.detail.contains("GET /library/sections → 502 bad gateway"), "{}", dead[0].info.detail);
    assert!(dead[0].info.detail.contains("attempt 3"));
    assert!(host.logs().iter().any(|(l, m)| *l == LogLevel::Warn && m.contains("dead-lettered")));
}

#[test]
fn transport_errors_are_transient() {
    let (host, mut policy) = setup();
    host.script(None, "/", Reply::Transport(TransportError::Refused("127.0.0.1:32400".into())), 1);
    worked(policy.step(&host));
    let job = &host.jobs()[0];
    assert!(job.last_error.as_deref().unwrap().contains("Plex could not be reached: connection refused"));
    assert!(host.dead().is_empty());
}

#[test]
fn malformed_json_is_transient() {
    let (host, mut policy) = setup();
    host.script(None, "/library/metadata/", Reply::Response(status_response(200, "<html>oops")), 1);
    worked(policy.step(&host));
    let job = &host.jobs()[0];
    assert!(job.last_error.as_deref().unwrap().starts_with("plex-malformed-response"));
    assert_eq!(job.attempt, 1);
}

#[test]
fn bad_request_dead_letters_at_once_with_the_request() {
    let (host, mut policy) = setup();
    host.script(Some(Method::Put), "/library/sections/1/all", Reply::Response(status_response(400, "Bad Request")), 1);
    worked(policy.step(&host));
    assert!(host.jobs().is_empty());
    let dead = host.dead();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].job.attempt, 1);
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
    worked(policy.step(&host));
    let detail = &host.dead()[0].info.detail;
    let summary = detail.split("summary.value=").nth(1).unwrap();
    let value = summary.split('&').next().unwrap();
    assert!(value.chars().count() <= 201, "{}", value.len());
}

#[test]
fn unauthorized_retries_slowly_and_says_what_to_fix() {
    let (host, mut policy) = configured(r#"{"max_retries":1}"#);
    for _ in 0..3 {
        host.script(
            None,
            "/library/sections",
            Reply::Response(status_response(401, "<html><h1>401 Unauthorized</h1></html>")),
            1,
        );
        let now = host.now();
        worked(policy.step(&host));
        let job = &host.jobs()[0];
        assert_eq!(job.not_before_ms, now + 60_000);
        host.set_now(job.not_before_ms);
    }
    // Never dead-lettered for a token problem, even past max_retries.
    assert!(host.dead().is_empty());
    assert!(
        host.logs().iter().any(|(l, m)| *l == LogLevel::Warn
            && m.contains("Plex rejected the token; check plex_token in the plugin settings"))
    );
    assert!(host.jobs()[0].last_error.as_deref().unwrap().starts_with("plex-unauthorized"));
    // Once the token is fixed the job goes through.
    worked(policy.step(&host));
    assert!(host.jobs().is_empty());
}

#[test]
fn not_in_plex_waits_on_the_slow_schedule_then_dead_letters() {
    let (host, mut policy) = setup();
    host.add_scene(scene("12", "Scene A", "/data/Movies/not scanned yet.mkv"));
    let now = host.now();
    worked(policy.step(&host));
    let job = &host.jobs()[0];
    assert!(job.not_before_ms <= now + 30_000);
    assert!(job.last_error.as_deref().unwrap().contains("not in Plex yet"));
    assert!(
        host.logged("not in Plex yet: no item in library \"Movies\" has the file /data/Movies/not scanned yet.mkv")
    );
    for _ in 2..=12 {
        let job = &host.jobs()[0];
        host.set_now(job.not_before_ms);
        worked(policy.step(&host));
    }
    let dead = host.dead();
    assert_eq!(dead.len(), 1, "dead-lettered after 12 attempts");
    assert_eq!(dead[0].job.attempt, 12);
    assert_eq!(dead[0].info.error_class, "not-in-plex");
}

#[test]
fn path_outside_every_library_says_so() {
    let (host, mut policy) = setup();
    host.add_scene(scene("12", "Scene A", "/elsewhere/x.mkv"));
    worked(policy.step(&host));
    assert!(host.logged("no Plex library folder contains /elsewhere/x.mkv (libraries searched: Movies, TV Shows)"));
    assert_eq!(host.request_lines(), vec!["GET /library/sections"]);
    assert_eq!(host.jobs().len(), 1);
}

#[test]
fn plex_library_restricts_sections() {
    let (host, mut policy) = configured(r#"{"plex_library":"tv shows, Nope"}"#);
    worked(policy.step(&host));
    assert!(host.logged("plex_library names not found in Plex as movie or TV libraries: nope"));
    assert!(host.logged("no Plex library folder contains"));
    assert_eq!(host.request_lines(), vec!["GET /library/sections"]);
}

#[test]
fn ambiguous_match_dead_letters_when_strict() {
    let (host, mut policy) = setup();
    host.plex.borrow_mut().add_item("1", "107", "Dup", PATH);
    worked(policy.step(&host));
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
    worked(policy.step(&host));
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
    worked(policy.step(&host));
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
    worked(policy.step(&host));
    worked(policy.step(&host));
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
    worked(policy.step(&host));
    let job = host.jobs()[0].clone();
    assert!(job.last_error.as_deref().unwrap().starts_with("stash-unavailable"));
    assert!(job.not_before_ms <= host.now() + 5_000);

    host.set_now(job.not_before_ms);
    host.stash_error("12", StashError::Unauthorized("401".into()));
    let now = host.now();
    worked(policy.step(&host));
    let job = host.jobs()[0].clone();
    assert_eq!(job.not_before_ms, now + 60_000);
    assert!(host.logged("Stash rejected the plugin's credentials"));
    assert!(host.requests().is_empty());
}

#[test]
fn sync_master_off_writes_nothing() {
    let (host, mut policy) = configured(r#"{"sync_master":false}"#);
    worked(policy.step(&host));
    assert!(host.requests().is_empty());
    assert!(host.jobs().is_empty());
    assert!(host.logged("field sync is off"));
}

#[test]
fn paths_are_obfuscated_in_every_log_line() {
    let (host, mut policy) = setup();
    host.obfuscate_paths(true);
    host.add_scene(scene("12", "Scene A", "/data/Movies/secret name.mkv"));
    worked(policy.step(&host)); // not in Plex
    host.add_scene(scene("12", "Scene A", "/elsewhere/secret name.mkv"));
    host.set_now(host.jobs()[0].not_before_ms);
    worked(policy.step(&host)); // no section
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
    let summary = worked(policy.step(&host));
    assert!(summary.contains("still listing"), "{summary}");
    assert_eq!(host.requests().len(), 1 + MAX_PAGES_PER_STEP as usize);
    let job = &host.jobs()[0];
    assert_eq!(job.attempt, 0, "a release does not count as an attempt");
    assert_eq!(job.not_before_ms, host.now());
    host.clear_requests();
    worked(policy.step(&host));
    let lines = host.request_lines();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(host.requests()[0].header_value("X-Plex-Container-Start"), Some("5000"));
    assert!(host.jobs().is_empty());
}

#[test]
fn long_steps_renew_the_lease() {
    let (host, mut policy) = setup();
    host.set_request_duration(40_000);
    worked(policy.step(&host));
    // 4 requests × 40 s: renewed before the 3rd (80 s) request at least.
    assert!(host.renewals() >= 1);
    assert!(host.jobs().is_empty(), "completed with the renewed lease");
}

#[test]
fn lease_lost_before_recording_the_outcome() {
    let (host, mut policy) = setup();
    host.steal_leases_at_request(4);
    let summary = worked(policy.step(&host));
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
    let summary = worked(policy.step(&host));
    assert!(summary.contains("lease was lost to another drainer"), "{summary}");
    // The renewal before the second request failed: no further requests.
    assert_eq!(host.request_lines(), vec!["GET /library/sections"]);
    assert_eq!(host.jobs().len(), 1);
}

#[test]
fn a_404_on_the_section_list_is_not_fatal() {
    let (host, mut policy) = setup();
    host.script(None, "/library/sections", Reply::Response(status_response(404, "")), 1);
    worked(policy.step(&host));
    assert!(host.dead().is_empty());
    assert!(host.jobs()[0].last_error.as_deref().unwrap().contains("check that plex_url"));
}

#[test]
fn other_client_errors_are_permanent() {
    let (host, mut policy) = setup();
    host.script(Some(Method::Put), "/", Reply::Response(status_response(414, "URI Too Long")), 1);
    worked(policy.step(&host));
    let dead = host.dead();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].info.error_class, "plex-rejected-request");
    assert!(dead[0].info.detail.contains("→ 414 URI Too Long"));
}

#[test]
fn a_section_that_disappeared_is_read_again() {
    let (host, mut policy) = setup();
    host.script(Some(Method::Get), "/library/sections/1/all", Reply::Response(status_response(404, "")), 1);
    worked(policy.step(&host));
    let job = host.jobs()[0].clone();
    assert!(job.last_error.as_deref().unwrap().starts_with("not-in-plex"));
    host.set_now(job.not_before_ms);
    host.clear_requests();
    worked(policy.step(&host));
    // The section list is fetched again before listing.
    assert_eq!(host.request_lines()[0], "GET /library/sections");
    assert!(host.jobs().is_empty());
}
