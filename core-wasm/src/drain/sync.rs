//! One job: the Stash scene → its Plex item → the desired state → one PUT
//! (and the rating, and the images) → the item read back to verify.

use super::locate::{self, Confidence, Located};
use super::{Done, DrainState, Failure, JobRun, MAX_ERROR_CHARS, images, malformed};
use crate::classify::{self, Endpoint, ErrorClass};
use crate::desired;
use crate::edits;
use crate::host::{LogLevel, Method, PlexRequest, Scene};
use crate::plex_json::{self, PlexItem};
use crate::text::clip;

/// What the read-back said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verify {
    /// Plex shows everything that was written.
    Verified,
    /// These fields differ from what was written.
    Drifted(Vec<&'static str>),
}

pub fn process(state: &mut DrainState, run: &mut JobRun<'_>, scene: Scene) -> Result<Done, Failure> {
    let Some(first) = scene.files.first() else {
        return Ok(Done::NoFile);
    };
    let shown = run.settings.path_map.to_plex(&first.path);
    run.shown_path = Some(clip(&run.host.obfuscate_path(&shown), super::PATH_LOG_CHARS));
    let (rating_key, item, section, confidence) = match locate::locate(state, run, &scene)? {
        Located::Item { rating_key, item, section, confidence } => (rating_key, item, section, confidence),
        Located::Unfinished { section, listed, total } => return Ok(Done::Unfinished { section, listed, total }),
        Located::Parked { until, folder, requested } => {
            return Ok(Done::WaitingForScan { until, folder: clip(&run.host.obfuscate_path(&folder), 300), requested });
        }
        Located::Skipped => return Ok(Done::Skipped),
    };
    let kind = section.kind.item_kind();
    let want = desired::desired(&scene, run.settings, kind);
    for warning in want.warnings.iter().take(8) {
        run.host.log(LogLevel::Warn, &clip(&format!("{}: {warning}", run.who()), MAX_ERROR_CHARS));
    }
    let plan = edits::plan(&want, &item, run.settings.preserve_plex_edits, kind.plex_type(), &rating_key);
    let mut fields = plan.changed_names();

    if !plan.query.is_empty() {
        let mut request = PlexRequest::new(Method::Put, format!("/library/sections/{}/all", section.key));
        request.query = plan.query.clone();
        match run.send(Endpoint::Edit, &request) {
            Ok(_) => {}
            Err(Failure::Class(c)) if c.class == ErrorClass::StaleItem => {
                for f in &scene.files {
                    state.index.forget(&section, &run.settings.path_map.to_plex(&f.path), &rating_key);
                }
                return Err(classify::not_in_plex(format!(
                    "Plex item {rating_key} disappeared before it could be edited"
                ))
                .into());
            }
            Err(other) => return Err(other),
        }
    }
    if let Some(rating) = &plan.rating {
        let mut request = PlexRequest::new(Method::Put, "/:/rate");
        request.query = vec![
            ("key".into(), rating_key.clone()),
            ("identifier".into(), "com.plexapp.plugins.library".into()),
            ("rating".into(), rating.clone()),
        ];
        run.send(Endpoint::Rate, &request)?;
    }

    let pictures = images::sync(state, run, &scene, &want, &item, &rating_key)?;
    fields.extend(pictures.changed.iter().copied());

    let verify = if plan.is_empty() {
        None
    } else {
        let back = read_back(run, &rating_key)?;
        let drift = match &back {
            Some(item) => edits::drifted(&plan.sent, item),
            None => plan.changed_names(),
        };
        Some(if drift.is_empty() { Verify::Verified } else { Verify::Drifted(drift) })
    };
    if let Some(Verify::Drifted(fields)) = &verify {
        run.host.log(
            LogLevel::Warn,
            &clip(
                &format!(
                    "{}: Plex item {rating_key} does not show what was written to {} (drifted); another tool or a Plex agent may be editing it",
                    run.who(),
                    fields.join(", ")
                ),
                MAX_ERROR_CHARS,
            ),
        );
    }
    let notes = notes(&want, confidence, &pictures.notes);
    if fields.is_empty() {
        return Ok(Done::InSync { rating_key, notes });
    }
    Ok(Done::Synced { rating_key, fields, verify, notes })
}

fn notes(want: &desired::Desired, confidence: Confidence, images: &[String]) -> Vec<String> {
    let mut notes = Vec::new();
    if !want.meaningful {
        notes.push("the scene has no meaningful metadata yet, so nothing in Plex was cleared".to_string());
    }
    if confidence == Confidence::UniqueName {
        notes.push("matched by file name only".to_string());
    }
    notes.extend(images.iter().cloned());
    notes
}

/// `GET /library/metadata/{rk}` after a write.
fn read_back(run: &mut JobRun<'_>, rating_key: &str) -> Result<Option<PlexItem>, Failure> {
    let request = PlexRequest::get(format!("/library/metadata/{rating_key}"));
    let response = match run.send(Endpoint::Item, &request) {
        Ok(r) => r,
        Err(Failure::Class(c)) if c.class == ErrorClass::StaleItem => return Ok(None),
        Err(other) => return Err(other),
    };
    plex_json::parse_item(&response.body).map_err(|e| malformed(&request, e))
}
