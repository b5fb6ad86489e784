//! `run-task`: the reliability tasks. `args` is the task's JSON args object
//! as text (empty = `{}`).
//!
//! | task | args | output |
//! |---|---|---|
//! | `health_check` | – | one line each: Stash reachable (one `find-scenes` page), Plex reachable (`GET /identity`), token valid (`GET /library/sections`), the `plex_library` libraries exist, the most recently updated scenes' files lie in their folders; then the status (a passing probe while the breaker is open starts the trials; a passing token check ends a token pause) |
//! | `breaker_open` | `{"minutes": N}` (1–10080, default 60) | opens the breaker by hand until then |
//! | `breaker_close` | – | closes it (syncing resumes with the ramp) |
//! | `breaker_reset` | – | closes it and clears its counters, the probe schedule, the ramp, the retry budget and a token pause (the outage history stays) |
//! | `outage_summary` | `{"days": N}` (1–3650, default 30) | outage history with count, downtime, MTTR, MTBF and availability |
//!
//! `status` (its own export) says how syncing stands, for the host's queue
//! status report and for the host's "Recover Outage Jobs" (the outages).

use serde_json::{Map, Value};

use crate::drain;
use crate::health;
use crate::host::{Describe, Host, LogLevel, PolicyStatus, TaskSpec};
use crate::resilience::Resilience;
use crate::settings::Settings;
use crate::text::{clip, utc_text};

/// The tasks, as `policy-info` declares them.
pub const TASKS: &[(&str, &str)] = &[
    (
        "health_check",
        "Check Stash, Plex, the token, the libraries and where scenes' files are, and show how syncing stands",
    ),
    ("breaker_open", "Pause syncing: open the circuit breaker (args: minutes, default 60)"),
    ("breaker_close", "Resume syncing: close the circuit breaker"),
    ("breaker_reset", "Reset the circuit breaker and its history of trips"),
    ("outage_summary", "Plex outages with MTTR, MTBF and availability (args: days, default 30)"),
];

pub fn specs() -> Vec<TaskSpec> {
    TASKS
        .iter()
        .map(|(name, description)| TaskSpec { name: (*name).into(), description: (*description).into() })
        .collect()
}

/// How syncing stands, without effects.
pub fn status(settings: &Settings, host: &dyn Host) -> Result<PolicyStatus, String> {
    let now = host.now_ms();
    let mut res = Resilience::load(host, settings, now)
        .map_err(|e| format!("could not read the policy state: {}", e.describe()))?;
    res.tick(host, now);
    let counts = host.counts().ok();
    let text = res.status(now, counts.as_ref());
    let mut lines = text.lines().map(str::to_string);
    let summary = lines.next().unwrap_or_default();
    Ok(PolicyStatus {
        condition: res.condition(now),
        summary,
        details: lines.collect(),
        outages: res.state.outages.windows(),
    })
}

pub fn run(settings: &Settings, host: &dyn Host, name: &str, args: &str) -> Result<String, String> {
    if !TASKS.iter().any(|(t, _)| *t == name) {
        let known: Vec<&str> = TASKS.iter().map(|(t, _)| *t).collect();
        return Err(format!("unknown task {}; known tasks: {}", clip(name, 100), known.join(", ")));
    }
    let args = parse_args(args)?;
    let now = host.now_ms();
    let mut res = Resilience::load(host, settings, now)
        .map_err(|e| format!("could not read the policy state: {}", e.describe()))?;
    res.tick(host, now);
    let out = match name {
        "health_check" => health_check(settings, &mut res, host),
        "breaker_open" => {
            let minutes = number(&args, "minutes", 60, 1, 10_080)?;
            let until = now.saturating_add(i64::from(minutes) * 60_000);
            res.force_open(host, now, until);
            format!(
                "Circuit breaker opened by hand until {} ({minutes} min): nothing is sent to Plex until then; changes wait in the queue. Run breaker_close to resume earlier.",
                utc_text(until)
            )
        }
        "breaker_close" => {
            if res.force_close(host, now) {
                format!("Circuit breaker closed by hand.\n{}", res.status(now, None))
            } else {
                "The circuit breaker was already closed.".to_string()
            }
        }
        "breaker_reset" => {
            res.reset(host, now);
            format!("Circuit breaker reset.\n{}", res.status(now, None))
        }
        "outage_summary" => {
            let days = number(&args, "days", 30, 1, 3_650)?;
            res.state.outages.report(now, days, res.state.since_ms)
        }
        other => return Err(format!("unknown task {}", clip(other, 100))),
    };
    res.save_if_changed(host).map_err(|e| format!("could not save the policy state: {}", e.describe()))?;
    Ok(out)
}

/// The health check: Stash, Plex, the token, the libraries and the paths,
/// one line each (a failed check does not hide the others; only what needs
/// an answer that failed is "not checked"), then how syncing stands. A
/// passing probe while the breaker is open starts the trials; an accepted
/// token ends a token pause.
fn health_check(settings: &Settings, res: &mut Resilience, host: &dyn Host) -> String {
    let mut lines = vec!["Health check:".to_string()];
    let stash = health::stash_first_page(host);
    lines.push(health::stash_line(&stash));

    let label = clip(&host.plex_server_label(), 200);
    let identity = health::identity(host);
    let now = host.now_ms();
    match &identity {
        Ok(detail) => {
            lines.push(format!("Plex: OK, {label} answers ({detail})"));
            let forced = matches!(res.state.breaker.state, crate::breaker::State::Open { forced: true, until, .. } if now < until);
            if res.state.breaker.is_open() && !forced {
                res.probe_ok(host, now, detail.clone());
                lines.push("The circuit breaker was open: trial changes may run now.".to_string());
            }
        }
        Err(c) => {
            lines.push(format!("Plex: FAILED at {label}: {}.{}", clip(&c.message, 400), health::plex_advice(c.class)))
        }
    }

    // Why the checks that need the sections answer could not run.
    let mut sections_missing = "Plex is not reachable";
    let sections = if identity.is_ok() {
        match health::token(host) {
            Ok(response) => {
                lines.push("Plex token: OK, Plex accepts it".to_string());
                res.auth_ok(host, host.now_ms());
                Some(response)
            }
            Err(c) => {
                match health::unauthorized_status(&c) {
                    Some(status) => {
                        let waiting = host.counts().map(|c| crate::resilience::pending(&c)).unwrap_or(0);
                        if res.pause_for_auth(host.now_ms(), status, &c.message) {
                            host.log(LogLevel::Error, &drain::auth_message(status, waiting));
                        }
                        lines.push(format!(
                            "Plex token: FAILED, {}. Syncing is paused until Plex accepts it; changes wait in the queue.",
                            c.message
                        ));
                    }
                    None => lines.push(format!(
                        "Plex token: FAILED, it could not be checked: {}.{}",
                        clip(&c.message, 400),
                        health::plex_advice(c.class)
                    )),
                }
                sections_missing = "the token check failed";
                None
            }
        }
    } else {
        lines.push(format!("Plex token: not checked ({sections_missing})"));
        None
    };

    let libraries = sections.map(|response| health::libraries(&response, &settings.plex_library));
    match &libraries {
        Some(Ok(libs)) => lines.push(health::libraries_line(libs, &settings.plex_library)),
        Some(Err(c)) => {
            lines.push(format!("Libraries: FAILED, {}.{}", c.message, health::plex_advice(c.class)));
            sections_missing = "Plex's libraries could not be read";
        }
        None => lines.push(format!("Libraries: not checked ({sections_missing})")),
    }

    let paths = match (&stash, &libraries) {
        (_, None | Some(Err(_))) => format!("Paths: not checked ({sections_missing})"),
        (Err(_), _) => "Paths: not checked (Stash is not reachable)".to_string(),
        (_, Some(Ok(libs))) if libs.used.is_empty() => {
            "Paths: not checked (no movie or TV library to check against)".to_string()
        }
        (Ok(first), _) if first.count == 0 => "Paths: not checked (Stash has no scenes yet)".to_string(),
        (Ok(first), Some(Ok(libs))) => match health::recent_scenes(host, first) {
            Ok(scenes) => health::paths_line(host, &scenes, libs, &settings.path_map),
            Err(e) => {
                format!("Paths: not checked, Stash did not list its most recent scenes: {}", clip(&e.describe(), 400))
            }
        },
    };
    lines.push(paths);

    let counts = host.counts().ok();
    lines.push(res.status(host.now_ms(), counts.as_ref()));
    lines.join("\n")
}

fn parse_args(args: &str) -> Result<Map<String, Value>, String> {
    let trimmed = args.trim();
    if trimmed.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(trimmed) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(Value::Null) => Ok(Map::new()),
        Ok(_) => Err("the task arguments must be a JSON object".to_string()),
        Err(e) => Err(format!("the task arguments are not valid JSON ({})", clip(&e.to_string(), 200))),
    }
}

/// A whole-number argument (JSON number or numeric text) in `lo..=hi`.
fn number(args: &Map<String, Value>, key: &str, default: u32, lo: u32, hi: u32) -> Result<u32, String> {
    let value = match args.get(key) {
        None | Some(Value::Null) => return Ok(default),
        Some(v) => v,
    };
    let n = match value {
        Value::Number(n) => {
            n.as_i64().or_else(|| n.as_f64().filter(|x| x.fract() == 0.0 && x.abs() < 1e15).map(|x| x as i64))
        }
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if n >= i64::from(lo) && n <= i64::from(hi) => Ok(u32::try_from(n).unwrap_or(default)),
        _ => Err(format!("{key} must be a whole number from {lo} to {hi} (got {})", clip(&value.to_string(), 60))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::breaker::Kind;
    use crate::host::StashError;
    use crate::host::TransportError;
    use crate::resilience::STATE_KEY;
    use crate::test_support::{FakeHost, Reply, parse_settings, scene, status_response};

    /// The status as the host prints it: the summary, then the details.
    fn status_text(s: &Settings, host: &FakeHost) -> String {
        let st = status(s, host).unwrap();
        std::iter::once(st.summary).chain(st.details).collect::<Vec<_>>().join("\n")
    }

    fn state(host: &FakeHost) -> Resilience {
        Resilience::load(host, &Settings::default(), host.now()).unwrap()
    }

    #[test]
    fn unknown_tasks_and_bad_args_are_explained() {
        let host = FakeHost::new();
        let s = Settings::default();
        let e = run(&s, &host, "frobnicate", "{}").unwrap_err();
        assert_eq!(
            e,
            "unknown task frobnicate; known tasks: health_check, breaker_open, breaker_close, breaker_reset, outage_summary"
        );
        assert!(run(&s, &host, "breaker_open", "{").unwrap_err().contains("not valid JSON"));
        assert!(run(&s, &host, "breaker_open", "[1]").unwrap_err().contains("JSON object"));
        assert_eq!(
            run(&s, &host, "breaker_open", r#"{"minutes":0}"#).unwrap_err(),
            "minutes must be a whole number from 1 to 10080 (got 0)"
        );
        assert!(run(&s, &host, "outage_summary", r#"{"days":"soon"}"#).unwrap_err().contains("days must be"));
        assert_eq!(state(&host).state.breaker.kind(), Kind::Closed, "a refused task changes nothing");
    }

    #[test]
    fn open_close_reset_by_hand() {
        let host = FakeHost::new();
        let s = Settings::default();
        let out = run(&s, &host, "breaker_open", r#"{"minutes":"15"}"#).unwrap();
        assert!(out.contains("opened by hand until") && out.contains("(15 min)"), "{out}");
        let r = state(&host);
        assert_eq!(r.state.breaker.open_until(), Some(host.now() + 15 * 60_000));
        assert!(host.state_calls().iter().any(|(call, keys)| *call == "state-set" && keys == &[STATE_KEY]));
        let status = status_text(&s, &host);
        assert!(status.contains("PAUSED, opened by hand"), "{status}");
        let out = run(&s, &host, "breaker_close", "{}").unwrap();
        assert!(out.starts_with("Circuit breaker closed by hand."), "{out}");
        assert!(out.contains("Request rate: 1/s (ramping up to 20/s"), "{out}");
        assert_eq!(run(&s, &host, "breaker_close", "{}").unwrap(), "The circuit breaker was already closed.");
        run(&s, &host, "breaker_open", "{}").unwrap();
        assert_eq!(state(&host).state.breaker.open_until(), Some(host.now() + 60 * 60_000));
        let out = run(&s, &host, "breaker_reset", "{}").unwrap();
        assert!(out.contains("healthy (circuit breaker closed"), "{out}");
        assert_eq!(state(&host).state.pacer.ramp, None);
    }

    /// A Plex with a movie, a TV and a music library, and a Stash whose
    /// `n` scenes lie in the movie library (scene `n` updated last).
    fn world(n: u32) -> FakeHost {
        let host = FakeHost::new();
        {
            let mut plex = host.plex.borrow_mut();
            plex.add_section("1", "movie", "Movies", &["/data/Movies"]);
            plex.add_section("2", "show", "TV Shows", &["/data/TV"]);
            plex.add_section("3", "artist", "Music", &["/data/Music"]);
        }
        for i in 1..=n {
            let mut s = scene(&i.to_string(), &format!("Scene {i}"), &format!("/data/Movies/Studio/{i}.mp4"));
            s.updated_at = format!("2024-03-01T12:{i:02}:00Z");
            host.add_scene(s);
        }
        host
    }

    /// The check lines of a report (before the status).
    fn checks(out: &str) -> Vec<&str> {
        out.lines().take_while(|l| !l.starts_with("Plex connection:")).collect()
    }

    #[test]
    fn health_check_probes_and_reports() {
        let host = world(8);
        let s = Settings::default();
        let out = run(&s, &host, "health_check", "{}").unwrap();
        assert_eq!(
            checks(&out),
            [
                "Health check:",
                "Stash: OK (8 scenes)",
                "Plex: OK, http://plex.test:32400 answers (Plex Media Server 1.41.3.9314-a0bfb8370, 3 ms)",
                "Plex token: OK, Plex accepts it",
                "Libraries: OK, plex_library is empty, so every movie and TV library is used: Movies, TV Shows",
                "Paths: OK, 5 of 5 sampled scenes (the most recently updated) lie in a Plex library folder",
            ],
            "{out}"
        );
        assert!(out.contains("Plex connection: healthy"), "the status follows: {out}");
        assert!(out.contains("Queue: 0 due"), "{out}");
        // One sections request serves the token and the libraries; only
        // requests of the allow-list.
        assert_eq!(host.request_lines(), vec!["GET /identity", "GET /library/sections"]);
        // Page 1 (the Stash check), then the newest scenes: the last page
        // and the one before it.
        assert_eq!(host.scene_pages(), [(1, 5), (2, 5)]);

        // Plex down: reported; the checks that need Plex are not run, Stash is.
        host.clear_requests();
        host.script(None, "/identity", Reply::Transport(TransportError::Refused("x".into())), 1);
        let out = run(&s, &host, "health_check", "{}").unwrap();
        assert_eq!(
            checks(&out),
            [
                "Health check:",
                "Stash: OK (8 scenes)",
                "Plex: FAILED at http://plex.test:32400: Plex could not be reached: connection refused (x). Check plex_url in the plugin settings, and that Plex Media Server is running and reachable from the machine Stash runs on.",
                "Plex token: not checked (Plex is not reachable)",
                "Libraries: not checked (Plex is not reachable)",
                "Paths: not checked (Plex is not reachable)",
            ],
            "{out}"
        );
        assert_eq!(host.request_lines(), vec!["GET /identity"]);

        // A bad token starts the pause and says so.
        host.enqueue_now("1");
        host.script(None, "/library/sections", Reply::Response(status_response(401, "")), 1);
        let out = run(&s, &host, "health_check", "{}").unwrap();
        assert!(
            out.contains(
                "Plex token: FAILED, Plex rejected the token (HTTP 401 on GET /library/sections); check plex_token in the plugin settings. Syncing is paused until Plex accepts it; changes wait in the queue."
            ),
            "{out}"
        );
        assert!(out.contains("Libraries: not checked (the token check failed)"), "{out}");
        assert!(out.contains("Paths: not checked (the token check failed)"), "{out}");
        assert!(out.contains("Plex token: REJECTED (HTTP 401) since"), "the status shows the pause: {out}");
        assert!(host.logged("Syncing is paused and nothing is lost: 1 change is waiting."));
        // Fixed: the next check ends the pause.
        let out = run(&s, &host, "health_check", "{}").unwrap();
        assert!(!out.contains("REJECTED") && !out.contains("FAILED"), "{out}");
        assert!(state(&host).state.auth.is_none());
    }

    #[test]
    fn health_check_stash_down_hides_no_plex_check() {
        let host = world(3);
        host.scenes_error(Some(StashError::Unreachable("connection refused".into())));
        let out = run(&Settings::default(), &host, "health_check", "{}").unwrap();
        let lines = checks(&out);
        assert!(lines[1].starts_with("Stash: FAILED, Stash unreachable (connection refused)."), "{out}");
        assert_eq!(
            lines[2..4],
            [
                "Plex: OK, http://plex.test:32400 answers (Plex Media Server 1.41.3.9314-a0bfb8370, 3 ms)",
                "Plex token: OK, Plex accepts it"
            ]
        );
        assert!(lines[4].starts_with("Libraries: OK"), "{out}");
        assert_eq!(lines[5], "Paths: not checked (Stash is not reachable)");
        assert_eq!(host.scene_pages(), [(1, 5)], "no second Stash request after a failed one");
    }

    #[test]
    fn health_check_names_missing_libraries_and_unmapped_paths() {
        let host = world(2);
        let mut odd = scene("3", "Elsewhere", "/stash/media/Studio/3.mp4");
        odd.updated_at = "2024-03-01T13:00:00Z".into();
        host.add_scene(odd);
        let s = parse_settings(r#"{"plex_library": "Movies, Films"}"#).unwrap();
        let out = run(&s, &host, "health_check", "{}").unwrap();
        let lines = checks(&out);
        assert!(
            lines[4].starts_with(
                "Libraries: FAILED, plex_library names no movie or TV library in Plex: \"films\" (no library of that name); syncing uses only Movies. Plex has: Movies (movie), TV Shows (TV), Music (music)."
            ),
            "{out}"
        );
        // The paths are still checked against the library that exists.
        assert!(
            lines[5].starts_with(
                "Paths: FAILED, 2 of 3 sampled scenes (the most recently updated) lie in a Plex library folder. Scene 3's file /stash/media/Studio/3.mp4 is in no library folder (Movies /data/Movies)."
            ),
            "{out}"
        );
        assert!(lines[5].contains("set plex_path_map"), "{out}");

        // With the path map, the same scenes lie in the library.
        let s = parse_settings(r#"{"plex_library": "movies", "plex_path_map": "/stash/media=>/data/Movies"}"#).unwrap();
        let out = run(&s, &host, "health_check", "{}").unwrap();
        let lines = checks(&out);
        assert_eq!(lines[4], "Libraries: OK, every library in plex_library exists in Plex: Movies");
        assert_eq!(
            lines[5],
            "Paths: OK, 3 of 3 sampled scenes (the most recently updated) lie in a Plex library folder"
        );
    }

    #[test]
    fn health_check_when_the_sections_answer_fails_or_is_unreadable() {
        let host = world(3);
        let s = Settings::default();
        host.script(None, "/library/sections", Reply::Response(status_response(500, "")), 1);
        let out = run(&s, &host, "health_check", "{}").unwrap();
        let lines = checks(&out);
        assert_eq!(
            lines[3..],
            [
                "Plex token: FAILED, it could not be checked: Plex answered 500 on GET /library/sections. Plex is starting up or busy: run Health Check again in a minute.",
                "Libraries: not checked (the token check failed)",
                "Paths: not checked (the token check failed)",
            ],
            "{out}"
        );
        assert!(state(&host).state.auth.is_none(), "a 500 is no token rejection");

        // Accepted, but not Plex's JSON (a proxy's page): the token is fine,
        // the libraries cannot be read.
        host.script(None, "/library/sections", Reply::Response(status_response(200, "<html>login</html>")), 1);
        let out = run(&s, &host, "health_check", "{}").unwrap();
        let lines = checks(&out);
        assert_eq!(lines[3], "Plex token: OK, Plex accepts it");
        assert!(
            lines[4].starts_with("Libraries: FAILED, Plex sent an unexpected answer to GET /library/sections: "),
            "{out}"
        );
        assert!(lines[4].ends_with("not at a web page or a proxy's login."), "{out}");
        assert_eq!(lines[5], "Paths: not checked (Plex's libraries could not be read)");
    }

    #[test]
    fn health_check_with_an_empty_stash_or_plex() {
        let host = FakeHost::new();
        let out = run(&Settings::default(), &host, "health_check", "{}").unwrap();
        let lines = checks(&out);
        assert_eq!(lines[1], "Stash: OK (0 scenes)");
        assert!(
            lines[4].starts_with("Libraries: FAILED, Plex has no movie or TV library (no library at all)."),
            "{out}"
        );
        assert_eq!(lines[5], "Paths: not checked (no movie or TV library to check against)");
        let host = world(0);
        let out = run(&Settings::default(), &host, "health_check", "{}").unwrap();
        assert_eq!(checks(&out)[5], "Paths: not checked (Stash has no scenes yet)");
    }

    #[test]
    fn health_check_ends_an_outage_wait() {
        let host = FakeHost::new();
        let s = Settings::default();
        let mut r = state(&host);
        for _ in 0..5 {
            r.record(&host, host.now(), crate::breaker::Outcome::Failure, Some("refused"));
        }
        r.save_if_changed(&host).unwrap();
        let out = run(&s, &host, "health_check", "{}").unwrap();
        assert!(out.contains("trial changes may run now"), "{out}");
        assert_eq!(state(&host).state.breaker.kind(), Kind::HalfOpen);
    }

    #[test]
    fn outage_summary_and_window() {
        let host = FakeHost::new();
        let s = Settings::default();
        assert!(status(&s, &host).unwrap().outages.is_empty());
        let t0 = host.now();
        let mut r = state(&host);
        for _ in 0..5 {
            r.record(&host, t0, crate::breaker::Outcome::Failure, Some("connection refused"));
        }
        r.probe_ok(&host, t0 + 40_000, "ok".into());
        for _ in 0..3 {
            r.state.breaker.permit(&r.cfg.breaker, t0 + 41_000);
            r.record(&host, t0 + 41_000, crate::breaker::Outcome::Success { elapsed_ms: 3 }, None);
        }
        r.save_if_changed(&host).unwrap();
        host.advance(60_000);
        let outages = status(&s, &host).unwrap().outages;
        assert_eq!(outages.len(), 1);
        assert_eq!((outages[0].started_ms, outages[0].ended_ms), (t0, t0 + 41_000));
        assert_eq!(outages[0].cause, "connection refused");
        let out = run(&s, &host, "outage_summary", r#"{"days":7}"#).unwrap();
        assert!(out.starts_with("Plex outages over the last 7 day(s)"), "{out}");
        assert!(out.contains("1 outage(s), downtime 41s, MTTR 41s"), "{out}");
        assert!(out.contains("cause: connection refused"), "{out}");
    }
}
