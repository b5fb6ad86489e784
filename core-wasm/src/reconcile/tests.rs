//! Reconciliation through the fake host: a crafted library, synced by the
//! real drain where a scene is meant to be in sync.

use super::*;
use crate::host::StepOutcome;
use crate::policy::Policy;
use crate::test_support::{FakeHost, host_settings, scene};

const SETTINGS: &str = r#"{"sync_sort_title":"off","sync_tagline":false,"sync_performers":false,
    "sync_collection":false,"sync_group_collections":false,"sync_poster":false,"sync_background":false"#;

fn settings(more: &str) -> Vec<crate::host::Setting> {
    let text = if more.is_empty() { format!("{SETTINGS}}}") } else { format!("{SETTINGS},{more}}}") };
    host_settings(&text).unwrap()
}

fn tagged(id: &str, title: &str, path: &str) -> Scene {
    let mut s = scene(id, title, path);
    s.tags = vec![crate::host::Tag { id: "1".into(), name: "Blue".into() }];
    s
}

/// Step until nothing is due and no run is active (waits on the fake
/// clock). Returns the summaries of the steps that worked.
fn drain(host: &FakeHost, policy: &mut Policy) -> Vec<String> {
    let mut worked = Vec::new();
    for _ in 0..10_000 {
        match policy.step(host).unwrap() {
            StepOutcome::Worked(s) => worked.push(s),
            StepOutcome::WaitMs(ms) => host.advance(i64::from(ms)),
            StepOutcome::Idle(_) => return worked,
        }
    }
    panic!("the drain did not end")
}

/// Section 1 (movies at /data); scenes 1-6 and Plex item 99 that no scene
/// has. Scenes 1 and 2 are synced by the drain.
fn library() -> (FakeHost, Policy) {
    let host = FakeHost::new();
    {
        let mut plex = host.plex.borrow_mut();
        plex.add_section("1", "movie", "Movies", &["/data"]);
        plex.add_item("1", "11", "x", "/data/1.mkv");
        plex.add_item("1", "12", "x", "/data/2.mkv");
        plex.add_item("1", "13", "x", "/data/3.mkv");
        plex.add_item("1", "15", "x", "/data/5.mkv");
        plex.add_item("1", "16", "x", "/data/5.mkv");
        plex.add_item("1", "99", "Orphan", "/data/orphan.mkv");
    }
    for id in ["1", "2", "3", "4", "5"] {
        host.add_scene(tagged(id, &format!("Scene {id}"), &format!("/data/{id}.mkv")));
    }
    let mut no_file = tagged("6", "Scene 6", "/x");
    no_file.files.clear();
    host.add_scene(no_file);
    let mut policy = Policy::new();
    policy.configure(&host, &settings("")).unwrap();
    host.enqueue_now("1");
    host.enqueue_now("2");
    drain(&host, &mut policy);
    assert_eq!(host.plex.borrow().item("11").unwrap().title, "Scene 1");
    (host, policy)
}

fn reconcile(host: &FakeHost, policy: &mut Policy, args: &str) -> Last {
    let started = policy.run_task(host, "reconcile", args).unwrap();
    assert!(started.starts_with("Reconciliation of "), "{started}");
    drain(host, policy);
    assert_eq!(host.state_value(RUN_KEY), None, "the run is over");
    load_last(host).unwrap().expect("a report")
}

fn line<'a>(report: &'a str, label: &str) -> &'a str {
    report.lines().find(|l| l.trim_start().starts_with(label)).unwrap_or_else(|| panic!("{label} in {report}"))
}

#[test]
fn every_class_on_a_crafted_library() {
    let (host, mut policy) = library();
    host.plex.borrow_mut().items.iter_mut().find(|i| i.rating_key == "12").unwrap().title = "Edited in Plex".into();
    host.clear_requests();
    let last = reconcile(&host, &mut policy, r#"{"examples": 20}"#);
    let r = &last.report;
    assert!(
        r.starts_with("Reconciliation of all scenes (report only): 6 scene(s) checked against 6 Plex item(s)"),
        "{r}"
    );
    assert_eq!(line(r, "in sync:"), "  in sync: 1");
    assert_eq!(line(r, "drifted:"), "  drifted: 1");
    assert_eq!(line(r, "never synced:"), "  never synced: 1");
    assert_eq!(line(r, "missing from Plex:"), "  missing from Plex: 1");
    assert_eq!(line(r, "ambiguous match:"), "  ambiguous match: 1");
    assert_eq!(line(r, "no file:"), "  no file: 1");
    assert_eq!(line(r, "Plex items with no Stash scene:"), "  Plex items with no Stash scene: 1");
    assert!(r.contains(r#"drifted: scene 2 "Scene 2" -- Plex item 12: title "Edited in Plex" → "Scene 2""#), "{r}");
    assert!(r.contains(r#"never synced: scene 3 "Scene 3" -- Plex item 13: title "x" → "Scene 3""#), "{r}");
    assert!(r.contains(r#"missing from Plex: scene 4 "Scene 4" -- /data/4.mkv"#), "{r}");
    assert!(r.contains(r#"ambiguous match: scene 5 "Scene 5" -- Plex items 15, 16"#), "{r}");
    assert!(r.contains(r#"Plex items with no Stash scene: Plex item 99 "Orphan""#), "{r}");
    assert!(r.contains("nothing was queued (report only)"), "{r}");
    // No request per scene: the sections and one listing page.
    assert_eq!(host.request_lines(), ["GET /library/sections", "GET /library/sections/1/all"]);
    // Report only: nothing queued.
    assert!(host.jobs().is_empty());
}

#[test]
fn drift_is_found_field_by_field() {
    type Mutate = fn(&mut crate::test_support::FakeItem);
    let cases: [(&str, Mutate); 6] = [
        ("title", |i| i.title = "Other".into()),
        ("summary", |i| i.summary = "Other".into()),
        ("studio", |i| i.studio = "Other".into()),
        ("originallyAvailableAt", |i| i.date = "1999-01-01".into()),
        ("genre", |i| {
            i.tags.insert("genre".into(), vec!["Blue".into(), "Red".into()]);
        }),
        ("userRating", |i| i.user_rating = Some(2.0)),
    ];
    for (field, mutate) in cases {
        let (host, mut policy) = library();
        policy.configure(&host, &settings(r#""sync_rating":true"#)).unwrap();
        let mut s = tagged("1", "Scene 1", "/data/1.mkv");
        s.rating100 = Some(80);
        host.add_scene(s);
        host.enqueue_now("1");
        drain(&host, &mut policy);
        let before = reconcile(&host, &mut policy, "{}");
        assert_eq!(line(&before.report, "in sync:"), "  in sync: 2", "{field}: {}", before.report);
        mutate(host.plex.borrow_mut().items.iter_mut().find(|i| i.rating_key == "11").unwrap());
        let r = reconcile(&host, &mut policy, "{}").report;
        assert_eq!(line(&r, "drifted:"), "  drifted: 1", "{field}: {r}");
        let fields = line(&r, "fields that differ");
        // Scene 3 (never synced) differs by its title, date, studio and
        // summary too; the drifted scene adds one to its field only.
        assert!(fields.contains(&format!("{field} ")), "{field}: {fields}");
        let drifted = r.lines().find(|l| l.contains("drifted: scene 1")).unwrap();
        assert_eq!(drifted.matches('→').count(), 1, "only {field} differs: {drifted}");
        assert!(drifted.contains(&format!("Plex item 11: {field} ")), "{drifted}");
    }
}

#[test]
fn enqueue_mode_queues_the_fixes_and_the_drain_makes_them_in_sync() {
    let (host, mut policy) = library();
    host.plex.borrow_mut().items.iter_mut().find(|i| i.rating_key == "12").unwrap().summary = "Plex's own".into();
    let first = reconcile(&host, &mut policy, r#"{"reconcile_mode": "enqueue"}"#);
    assert!(first.report.contains("queued fixes: 2"), "{}", first.report);
    // The drain ran them (they were due before the run's steps ended).
    assert!(host.jobs().is_empty());
    let r = reconcile(&host, &mut policy, "{}").report;
    assert_eq!(line(&r, "in sync:"), "  in sync: 3", "{r}");
    assert_eq!(line(&r, "drifted:"), "  drifted: 0", "{r}");
    assert_eq!(line(&r, "never synced:"), "  never synced: 0", "{r}");
    assert_eq!(host.plex.borrow().item("13").unwrap().title, "Scene 3");
}

#[test]
fn enqueue_coalesces_with_a_change_already_queued() {
    let (host, policy) = library();
    host.enqueue_now("3");
    let args: Map<String, serde_json::Value> = serde_json::from_str(r#"{"reconcile_mode":"enqueue"}"#).unwrap();
    // The run's steps by hand, so that the queued job is not drained.
    let mut run = Reconciler::default();
    run.start(&host, request_from_args(policy.settings(), &args, host.now()).unwrap()).unwrap();
    while run.running() {
        run.step(policy.settings(), &host).unwrap();
    }
    let jobs = host.jobs();
    // Scene 3 still has one job, now carrying the reconciliation's change.
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].scene_id, "3");
    assert!(jobs[0].payload.contains("Task.Reconcile"), "{:?}", jobs[0].payload);
}

use serde_json::Map;

#[test]
fn the_schedule_is_due_after_its_interval_and_holds_across_restarts() {
    assert!(!due(Schedule::Never, None, 0));
    assert!(due(Schedule::Hourly, None, 0));
    assert!(!due(Schedule::Hourly, Some(0), HOUR_MS - 1));
    assert!(due(Schedule::Hourly, Some(0), HOUR_MS));
    assert!(!due(Schedule::Daily, Some(0), 24 * HOUR_MS - 1));
    assert!(due(Schedule::Weekly, Some(0), 7 * 24 * HOUR_MS));

    let (host, _) = library();
    let start = host.now();
    let run = |host: &FakeHost| {
        // A new instance each time: a new drainer process.
        let mut policy = Policy::new();
        policy.configure(host, &settings(r#""reconcile_schedule":"daily""#)).unwrap();
        drain(host, &mut policy)
    };
    let worked = run(&host);
    assert!(worked.iter().any(|w| w.contains("Plex item(s) listed")), "{worked:?}");
    let last = load_last(&host).unwrap().unwrap();
    assert_eq!(last.started_ms, start);
    // An hour later, in a new process: not due.
    host.advance(HOUR_MS);
    assert!(run(&host).is_empty());
    // A day after the first start: due again.
    host.set_now(start + 24 * HOUR_MS);
    assert!(!run(&host).is_empty());
    assert_eq!(load_last(&host).unwrap().unwrap().started_ms, start + 24 * HOUR_MS);
    // Never: not even when a week has passed.
    host.advance(7 * 24 * HOUR_MS);
    let mut policy = Policy::new();
    policy.configure(&host, &settings("")).unwrap();
    assert!(drain(&host, &mut policy).is_empty());
}

#[test]
fn a_run_started_by_a_task_is_finished_by_the_next_instance() {
    let (host, mut policy) = library();
    policy.run_task(&host, "reconcile", "{}").unwrap();
    // The instance ends before doing any of it (the drainer was stopped).
    drop(policy);
    assert!(host.state_value(RUN_KEY).is_some());
    let mut policy = Policy::new();
    policy.configure(&host, &settings("")).unwrap();
    drain(&host, &mut policy);
    assert!(load_last(&host).unwrap().is_some());
    assert!(host.logged("under way"));
}

#[test]
fn requests_are_one_per_page_and_scopes_bound_the_scenes() {
    let host = FakeHost::new();
    {
        let mut plex = host.plex.borrow_mut();
        plex.add_section("1", "movie", "A", &["/a"]);
        plex.add_section("2", "movie", "B", &["/b"]);
        for i in 0..450 {
            plex.add_item("1", &format!("{}", 1000 + i), "t", &format!("/a/{i}.mkv"));
        }
        plex.add_item("2", "5", "t", "/b/0.mkv");
    }
    for i in 0..600 {
        let mut s = scene(&format!("{}", i + 1), "t", &format!("/a/{i}.mkv"));
        // Ten scenes were updated in the last day.
        s.updated_at = if i < 10 { "2023-11-14T20:00:00Z".into() } else { "2020-01-01T00:00:00Z".into() };
        host.add_scene(s);
    }
    let mut policy = Policy::new();
    policy.configure(&host, &settings("")).unwrap();
    let r = reconcile(&host, &mut policy, "{}").report;
    assert!(r.contains("600 scene(s) checked against 451 Plex item(s)"), "{r}");
    // 1 sections + ceil(450/200) + 1 listing requests; ceil(600/250) Stash pages.
    assert_eq!(host.requests().len(), 1 + 3 + 1);
    assert_eq!(host.scene_pages(), [(1, 250), (2, 250), (3, 250)]);
    // Stash's progress bar: one report per request after the sections,
    // never backwards, the listings filling the first part, ending full.
    let progress = host.progress_reports();
    assert_eq!(progress.len(), 3 + 1 + 3, "{progress:?}");
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    assert!((progress[3] - LISTING_SHARE).abs() < 1e-9, "both libraries listed: {progress:?}");
    assert!(progress[0] > 0.0 && progress[0] < progress[2], "{progress:?}");
    assert_eq!(progress.last().copied(), Some(1.0));
    assert_eq!(line(&r, "missing from Plex:"), "  missing from Plex: 150");
    assert_eq!(line(&r, "Plex items with no Stash scene:"), "  Plex items with no Stash scene: 1");

    // The last 24 hours (the fake clock is 2023-11-14T22:13:20Z).
    let r = reconcile(&host, &mut policy, r#"{"scope":"24h"}"#).report;
    assert!(r.starts_with("Reconciliation of scenes updated in the last 24 hours"), "{r}");
    assert!(r.contains(": 10 scene(s) checked"), "{r}");
    assert!(!r.contains("Plex items with no Stash scene"), "{r}");
    // Since the last run: the newest scene seen then, so nothing now.
    let r = reconcile(&host, &mut policy, r#"{"scope":"since_last"}"#).report;
    assert!(r.contains(": 0 scene(s) checked"), "{r}");
    let bad = policy.run_task(&host, "reconcile", r#"{"scope":"yesterday"}"#).unwrap_err();
    assert!(bad.contains("scope \"yesterday\" is not one of all, 24h, 7days, since_last"), "{bad}");
}

#[test]
fn plex_failing_ends_the_run_with_what_it_found() {
    let (host, mut policy) = library();
    host.script(
        None,
        "/library/sections",
        crate::test_support::Reply::Response(crate::test_support::status_response(500, "boom")),
        5,
    );
    let last = reconcile(&host, &mut policy, "{}");
    assert!(
        last.report.contains("stopped after 0 scene(s): Plex answered 500 to /library/sections"),
        "{}",
        last.report
    );
}

#[test]
fn stash_timestamps_in_the_servers_form() {
    // 2023-11-14T22:13:20Z
    let ms = 1_700_000_000_000;
    assert_eq!(crate::calendar::timestamp_like(ms, "2020-01-01T00:00:00Z").as_deref(), Some("2023-11-14T22:13:20Z"));
    assert_eq!(
        crate::calendar::timestamp_like(ms, "2020-01-01T00:00:00+01:00").as_deref(),
        Some("2023-11-14T23:13:20+01:00")
    );
    assert_eq!(
        crate::calendar::timestamp_like(ms, "2020-01-01T00:00:00-05:30").as_deref(),
        Some("2023-11-14T16:43:20-05:30")
    );
    assert_eq!(crate::calendar::timestamp_like(ms, "garbage"), None);
}
