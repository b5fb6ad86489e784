//! Deterministic demo/test library: Stash scenes with studios, performers,
//! tags and files under one library folder, and the stale Plex items a
//! Plex scan of those files would produce.

use crate::fake_plex::{FakePlex, ItemSpec, SectionKind};
use crate::fake_stash::{FakeStash, Performer, SceneFile, SceneGroup, SceneSpec, StashId, Studio, Tag};

/// The folder every demo file lives under (one sub-folder per studio).
pub const DEMO_LIBRARY_ROOT: &str = "/data/Stash";
/// The Plex section [`install_demo`] creates.
pub const DEMO_SECTION_KEY: &str = "1";

const ADJECTIVES: [&str; 12] = [
    "Quiet", "Golden", "Distant", "Electric", "Hidden", "Last", "Silver", "Wild", "Crimson", "Hollow", "Bright", "Café",
];
const NOUNS: [&str; 10] =
    ["Harbor", "Summer", "Signal", "Garden", "Frontier", "Echo", "Voyage", "Lantern", "Meadow", "Rock & Roll"];
/// (name, parent index)
const STUDIOS: [(&str, Option<usize>); 5] = [
    ("Northwind Pictures", None),
    ("Blue Harbor Films", Some(0)),
    ("Copper Lane Studio", None),
    ("Quiet Meadow & Co", None),
    ("Red Kite Productions", Some(2)),
];
const FIRST_NAMES: [&str; 5] = ["Ava", "Noah", "Mia", "Liam", "Zoë"];
const LAST_NAMES: [&str; 4] = ["Stone", "Rivera", "O'Neil", "Park"];
const GENDERS: [&str; 3] = ["FEMALE", "MALE", "NON_BINARY"];
const TAGS: [&str; 8] =
    ["Drama", "Comedy", "Outdoor", "Interview", "Behind the Scenes", "Sci-Fi & Fantasy", "Documentary", "Music"];

fn studio(i: usize) -> Studio {
    let (name, parent) = STUDIOS[i % STUDIOS.len()];
    Studio {
        id: (i % STUDIOS.len() + 1).to_string(),
        name: name.to_string(),
        parent: parent.map(|p| Box::new(studio(p))),
    }
}

fn performer(k: usize) -> Performer {
    let k = k % (FIRST_NAMES.len() * LAST_NAMES.len());
    Performer {
        id: (k + 1).to_string(),
        name: format!("{} {}", FIRST_NAMES[k % FIRST_NAMES.len()], LAST_NAMES[k / FIRST_NAMES.len()]),
        disambiguation: (k % 7 == 3).then(|| "II".to_string()),
        gender: Some(GENDERS[k % GENDERS.len()].to_string()),
        image_path: None,
    }
}

/// Date text for scene `i`: mostly `YYYY-MM-DD`, some `YYYY` and `YYYY-MM`
/// (Stash ≥ 0.30 date precision).
fn date(i: usize) -> String {
    // 2019-01-01 is day 17897 since the epoch; step 37 days per scene.
    let days = 17_897 + 37 * i as i64;
    let (y, m, d) = crate::clock::civil_from_days(days);
    if i % 7 == 6 {
        format!("{y:04}")
    } else if i % 11 == 10 {
        format!("{y:04}-{m:02}")
    } else {
        format!("{y:04}-{m:02}-{d:02}")
    }
}

fn title(i: usize) -> String {
    let combos = ADJECTIVES.len() * NOUNS.len();
    let base = format!("{} {}", ADJECTIVES[i % ADJECTIVES.len()], NOUNS[(i / ADJECTIVES.len()) % NOUNS.len()]);
    if i < combos { base } else { format!("{base} {}", i / combos + 1) }
}

/// `n` deterministic scenes with ids `"1"..="n"`, all fields a sync plugin
/// reads, and files at `/data/Stash/<Studio>/<Title> (<date>).mp4`.
/// Titles, studios and tags include non-ASCII and `&`/`'` on purpose.
/// `created_at`/`updated_at` are left to the fake clock.
pub fn demo_library(n: usize) -> Vec<SceneSpec> {
    (0..n)
        .map(|i| {
            let id = (i + 1).to_string();
            let title = title(i);
            let date = date(i);
            let studio = studio(i);
            let path = format!("{DEMO_LIBRARY_ROOT}/{}/{title} ({date}).mp4", studio.name);
            let mut file = SceneFile::new(&format!("{}", 10_000 + i), &path);
            file.duration = 300.0 + (i % 50) as f64 * 37.5;
            file.size = 200_000_000 + (i as u64 % 97) * 13_000_000;
            file.oshash = Some(format!("{:016x}", (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)));
            let performers = (0..1 + i % 3).map(|k| performer(i * 7 + k * 3)).collect();
            let tags = (0..2 + i % 3)
                .map(|k| {
                    let t = (i + k * 3) % TAGS.len();
                    Tag { id: (t + 1).to_string(), name: TAGS[t].to_string() }
                })
                .collect();
            SceneSpec {
                title: Some(title.clone()),
                code: Some(format!("DEMO-{:04}", i + 1)),
                details: (i % 9 != 8)
                    .then(|| format!("Scene {} of the demo library: “{title}”, filmed by {}.", i + 1, studio.name)),
                director: (i % 4 == 0).then(|| "Robin Vale".to_string()),
                urls: vec![format!("https://example.com/scenes/{}", i + 1)],
                date: Some(date),
                rating100: (i % 5 != 4).then_some((i as i64 * 13) % 100 + 1),
                organized: i % 2 == 0,
                files: vec![file],
                studio: Some(studio),
                performers,
                tags,
                groups: if i % 6 == 0 {
                    vec![SceneGroup {
                        scene_index: Some((i / 6 % 4 + 1) as i64),
                        group_id: (i / 6 % 3 + 1).to_string(),
                        group_name: format!("Demo Collection {}", i / 6 % 3 + 1),
                    }]
                } else {
                    Vec::new()
                },
                stash_ids: if i % 3 == 0 {
                    vec![StashId {
                        endpoint: "https://stashdb.org/graphql".into(),
                        stash_id: format!("00000000-0000-4000-8000-{:012x}", i + 1),
                    }]
                } else {
                    Vec::new()
                },
                ..SceneSpec::new(&id)
            }
        })
        .collect()
}

/// The item a Plex scan of the scene's primary file produces: same path,
/// title = file stem, no summary/studio/date/tags.
pub fn plex_item_for(scene: &SceneSpec) -> ItemSpec {
    let file = scene.files.first();
    let path = file.map(|f| f.path.clone()).unwrap_or_default();
    let stem = file
        .map(|f| {
            let base = f.basename();
            match base.rfind('.') {
                Some(dot) if dot > 0 => base[..dot].to_string(),
                _ => base.to_string(),
            }
        })
        .unwrap_or_default();
    ItemSpec {
        duration_ms: file.map(|f| (f.duration * 1000.0) as u64).unwrap_or(0),
        size: file.map(|f| f.size).unwrap_or(0),
        ..ItemSpec::new(&stem, &path)
    }
}

/// Loads [`demo_library`]`(n)` into `stash` and the matching stale items into
/// a movie section [`DEMO_SECTION_KEY`] ("Stash", location
/// [`DEMO_LIBRARY_ROOT`]) of `plex`. Returns `(scene id, ratingKey)` pairs.
pub fn install_demo(stash: &FakeStash, plex: &FakePlex, n: usize) -> Vec<(String, String)> {
    plex.add_section(DEMO_SECTION_KEY, "Stash", SectionKind::Movie, &[DEMO_LIBRARY_ROOT]);
    demo_library(n)
        .into_iter()
        .map(|scene| {
            let rk = plex.add_item(DEMO_SECTION_KEY, plex_item_for(&scene));
            let id = scene.id.clone();
            stash.upsert_scene(scene);
            (id, rk)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_stash::StashAuth;
    use std::collections::HashSet;

    #[test]
    fn library_is_deterministic_unique_and_under_the_root() {
        let a = demo_library(300);
        assert_eq!(a, demo_library(300));
        let paths: HashSet<&str> = a.iter().filter_map(SceneSpec::primary_path).collect();
        assert_eq!(paths.len(), 300);
        assert!(paths.iter().all(|p| p.starts_with("/data/Stash/") && p.ends_with(").mp4")));
        assert_eq!(a[0].primary_path(), Some("/data/Stash/Northwind Pictures/Quiet Harbor (2019-01-01).mp4"));
        assert_eq!(a[6].date.as_deref().map(str::len), Some(4));
        assert_eq!(a[10].date.as_deref().map(str::len), Some(7));
        assert!(a.iter().all(|s| s.studio.is_some() && !s.tags.is_empty() && !s.performers.is_empty()));
        assert_eq!(
            a[1].studio.as_ref().and_then(|s| s.parent.as_ref()).map(|p| p.name.as_str()),
            Some("Northwind Pictures")
        );
    }

    #[test]
    fn plex_item_is_the_stale_scan_result() {
        let scene = &demo_library(1)[0];
        let item = plex_item_for(scene);
        assert_eq!(item.title, "Quiet Harbor (2019-01-01)");
        assert_eq!(Some(item.file_path.as_str()), scene.primary_path());
        assert!(item.summary.is_none() && item.studio.is_none() && item.originally_available_at.is_none());
    }

    #[test]
    fn install_demo_pairs_scenes_with_items() {
        let stash = FakeStash::start(StashAuth::None).expect("stash");
        let plex = FakePlex::start(None).expect("plex");
        let pairs = install_demo(&stash, &plex, 4);
        assert_eq!(pairs.len(), 4);
        for (id, rk) in &pairs {
            let scene = stash.scene(id).expect("scene");
            let item = plex.item(rk).expect("item");
            assert_eq!(item.file_paths.first().map(String::as_str), scene.primary_path());
            assert!(scene.updated_at.is_some());
        }
    }
}
