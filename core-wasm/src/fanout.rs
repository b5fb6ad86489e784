//! A change to a performer, studio, tag or group concerns every scene that
//! carries it (renaming a performer does not touch the scenes in Stash, so
//! no scene hook fires). Its job (`performer:12`) is worked off one page of
//! the related scenes per step: each scene on the page gets a job of its
//! own (coalescing with what is queued), and the object's job comes back
//! for the next page until the last one.

use serde::{Deserialize, Serialize};

use crate::host::{Describe, Host, Job, LogLevel, QueueError, RelatedObject, SceneQuery, StepOutcome};
use crate::text::clip;

/// Related scenes asked for per step (the host's largest page).
pub const PAGE: u32 = 250;

/// The object a job key names, if it is not a scene.
pub fn object(key: &str) -> Option<RelatedObject> {
    let (kind, id) = key.split_once(':')?;
    let id = id.to_string();
    Some(match kind {
        "performer" => RelatedObject::Performer(id),
        "studio" => RelatedObject::Studio(id),
        "tag" => RelatedObject::Tag(id),
        "group" => RelatedObject::Group(id),
        _ => return None,
    })
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Progress {
    #[serde(default)]
    trigger: String,
    #[serde(default)]
    page: u32,
}

/// Work off one page of an object's job.
pub fn step(host: &dyn Host, job: &Job, related: RelatedObject) -> Result<StepOutcome, String> {
    let progress: Progress = serde_json::from_str(&job.payload).unwrap_or_default();
    let page = progress.page.max(1);
    let query = SceneQuery { page, per_page: PAGE, ids: Vec::new(), updated_after: None, related: Some(related) };
    let who = clip(&job.scene_id, 40);
    let found = match host.find_scenes(&query) {
        Ok(found) => found,
        Err(e) => {
            // Stash is away or busy: the job waits, no attempt used.
            let line = format!("{who}: could not list its scenes ({}); trying again in 30 s", clip(&e.describe(), 200));
            let back = host.now_ms().saturating_add(30_000);
            return match host.release(job.id, job.lease, back, &[]) {
                Ok(()) | Err(QueueError::LeaseLost) => {
                    host.log(LogLevel::Warn, &line);
                    Ok(StepOutcome::Worked(line))
                }
                Err(e) => Err(format!("could not give back {who}: {}", e.describe())),
            };
        }
    };
    let trigger = if progress.trigger.is_empty() { "fanout".to_string() } else { progress.trigger };
    let payload = serde_json::json!({"v": 1, "trigger": trigger, "fields": [], "via": job.scene_id}).to_string();
    let now = host.now_ms();
    let mut queued = 0u64;
    for scene in &found.scenes {
        match host.enqueue(&scene.id, &payload, now) {
            Ok(_) => queued += 1,
            Err(e) => return Err(failed(&who, &e)),
        }
    }
    let pages = found.count.div_ceil(u64::from(PAGE)).max(1);
    if u64::from(page) < pages && !found.scenes.is_empty() {
        // The object's job runs again, for the next page.
        let next = serde_json::json!({"v": 1, "trigger": trigger, "page": page + 1}).to_string();
        host.enqueue(&job.scene_id, &next, now).map_err(|e| failed(&who, &e))?;
    }
    match host.complete(job.id, job.lease, &[]) {
        Ok(()) | Err(QueueError::LeaseLost) => {}
        Err(e) => return Err(failed(&who, &e)),
    }
    let line = format!("{who} changed: queued {queued} scene(s) that carry it (page {page} of {pages})");
    host.log(LogLevel::Info, &line);
    Ok(StepOutcome::Worked(line))
}

fn failed(who: &str, e: &QueueError) -> String {
    format!("could not queue the scenes of {who}: {}", e.describe())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{Performer, StashError};
    use crate::policy::Policy;
    use crate::test_support::{FakeHost, host_settings, scene};

    fn host_with_performer_on(n: usize) -> FakeHost {
        let host = FakeHost::new();
        for i in 1..=n {
            let mut s = scene(&i.to_string(), "t", &format!("/data/{i}.mkv"));
            if i % 2 == 1 {
                s.performers.push(Performer {
                    id: "7".into(),
                    name: "P".into(),
                    disambiguation: None,
                    gender: None,
                    image_url: None,
                });
            }
            host.add_scene(s);
        }
        host
    }

    #[test]
    fn a_rename_queues_every_scene_that_carries_the_object_a_page_per_step() {
        let host = host_with_performer_on(600);
        let mut policy = Policy::new();
        policy.configure(&host, &host_settings("{}").unwrap()).unwrap();
        host.enqueue("performer:7", r#"{"v":1,"trigger":"Performer.Update.Post","fields":["name"]}"#, host.now())
            .unwrap();
        let first = match policy.step(&host).unwrap() {
            StepOutcome::Worked(s) => s,
            other => panic!("{other:?}"),
        };
        assert_eq!(first, "performer:7 changed: queued 250 scene(s) that carry it (page 1 of 2)");
        let object_job: Vec<_> = host.jobs().into_iter().filter(|j| j.scene_id == "performer:7").collect();
        assert_eq!(object_job.len(), 1, "the object's job comes back for page 2");
        assert!(object_job[0].payload.contains("\"page\":2"));
        // The object's job is due first (it was recorded first); drive until
        // it is done.
        let mut pages = 1;
        while host.jobs().iter().any(|j| j.scene_id == "performer:7") {
            let job = host.claim_for_test().unwrap();
            if job.scene_id == "performer:7" {
                step(&host, &job, object(&job.scene_id).unwrap()).unwrap();
                pages += 1;
            } else {
                host.release(job.id, job.lease, host.now() + 3_600_000, &[]).unwrap();
            }
        }
        assert_eq!(pages, 2);
        let scenes: Vec<String> = host.jobs().into_iter().map(|j| j.scene_id).collect();
        assert_eq!(scenes.len(), 300, "every odd scene, once");
        assert!(scenes.iter().all(|id| id.parse::<u32>().is_ok_and(|n| n % 2 == 1)));
        let job = host.jobs().into_iter().next().unwrap();
        assert!(job.payload.contains("\"via\":\"performer:7\""), "{}", job.payload);
    }

    #[test]
    fn stash_being_away_makes_the_job_wait_without_an_attempt() {
        let host = host_with_performer_on(3);
        host.enqueue("tag:3", "{}", host.now()).unwrap();
        host.scenes_error(Some(StashError::Unreachable("connection refused".into())));
        let job = host.claim_for_test().unwrap();
        let out = step(&host, &job, object("tag:3").unwrap()).unwrap();
        assert!(matches!(out, StepOutcome::Worked(ref s) if s.contains("could not list its scenes")), "{out:?}");
        let jobs = host.jobs();
        assert_eq!((jobs.len(), jobs[0].attempt, jobs[0].not_before_ms), (1, 0, host.now() + 30_000));
        assert!(object("performer").is_none() && object("12").is_none() && object("image:3").is_none());
    }
}
