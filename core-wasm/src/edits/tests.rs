use super::*;
use crate::desired::{self, ItemKind};
use crate::host::{Performer, Scene, Studio, Tag};
use crate::settings::Settings;

fn performer(name: &str) -> Performer {
    Performer { id: name.into(), name: name.into(), disambiguation: None, gender: None, image_url: None }
}

fn tag(name: &str) -> Tag {
    Tag { id: name.into(), name: name.into() }
}

fn scene() -> Scene {
    Scene {
        id: "7".into(),
        title: Some("My Scene".into()),
        code: Some("ABC-1".into()),
        details: Some("First paragraph.\n\nSecond.".into()),
        date: Some("2024-01-15".into()),
        studio: Some(Studio { id: "1".into(), name: "Studio X".into(), parent_name: None }),
        performers: vec![performer("Jane Doe")],
        tags: vec![tag("Drama")],
        ..Scene::default()
    }
}

fn want(scene: &Scene, settings: &Settings) -> Desired {
    desired::desired(scene, settings, ItemKind::Movie)
}

/// The item Plex holds after `plan`'s PUT was applied (and locked).
fn synced(scene: &Scene, settings: &Settings) -> PlexItem {
    let w = want(scene, settings);
    let mut item = PlexItem { rating_key: "108".into(), ..PlexItem::default() };
    for (f, v) in &w.scalars {
        let slot = match f {
            Scalar::Title => &mut item.title,
            Scalar::TitleSort => &mut item.title_sort,
            Scalar::Summary => &mut item.summary,
            Scalar::Tagline => &mut item.tagline,
            Scalar::OriginallyAvailableAt => &mut item.originally_available_at,
            Scalar::Studio => &mut item.studio,
            Scalar::ContentRating => &mut item.content_rating,
        };
        *slot = Some(v.clone()).filter(|v| !v.is_empty());
        item.locked.insert(f.plex_name().into());
    }
    for (l, names) in &w.lists {
        let slot = match l {
            ListKind::Actor => &mut item.actors,
            ListKind::Genre => &mut item.genres,
            ListKind::Collection => &mut item.collections,
            ListKind::Label => &mut item.labels,
        };
        *slot = names.clone();
        item.locked.insert(l.plex_name().into());
    }
    item
}

/// The query exactly as the host sends it.
fn wire(plan: &EditPlan) -> String {
    stash2plex::build_query(&plan.query)
}

#[test]
fn an_unchanged_scene_writes_nothing() {
    let s = scene();
    let settings = Settings::default();
    let p = plan(&want(&s, &settings), &synced(&s, &settings), false, 1, "108");
    assert!(p.is_empty(), "{:?}", p.sent);
    assert!(p.query.is_empty() && p.rating.is_none());
    // Plex spelling a tag in another case is the same tag.
    let mut item = synced(&s, &settings);
    item.genres = vec!["drama".into()];
    assert!(plan(&want(&s, &settings), &item, false, 1, "108").is_empty());
}

#[test]
fn first_sync_is_one_put_with_every_field_and_lock() {
    let s = scene();
    let p = plan(&want(&s, &Settings::default()), &PlexItem::default(), false, 1, "108");
    assert_eq!(
        wire(&p),
        "type=1&id=108\
         &title.value=My%20Scene&title.locked=1\
         &titleSort.value=My%20Scene&titleSort.locked=1\
         &summary.value=First%20paragraph.%0A%0ASecond.&summary.locked=1\
         &tagline.value=ABC-1&tagline.locked=1\
         &originallyAvailableAt.value=2024-01-15&originallyAvailableAt.locked=1\
         &studio.value=Studio%20X&studio.locked=1\
         &actor%5B0%5D.tag.tag=Jane%20Doe&actor.locked=1\
         &genre%5B0%5D.tag.tag=Drama&genre.locked=1\
         &collection%5B0%5D.tag.tag=Studio%20X&collection.locked=1"
    );
    assert_eq!(
        p.changed_names(),
        ["title", "titleSort", "summary", "tagline", "originallyAvailableAt", "studio", "actor", "genre", "collection"]
    );
}

#[test]
fn removing_a_tag_and_a_performer_uses_the_double_encoded_removal() {
    let settings = Settings { sync_collection: false, sync_group_collections: false, ..Settings::default() };
    let mut s = scene();
    let mut item = synced(&s, &settings);
    item.genres = vec!["Drama".into(), "Sci-Fi & Fantasy".into(), "Action, Adventure".into()];
    item.actors = vec!["Jane Doe".into(), "John Roe".into()];
    s.tags = vec![tag("Drama")];
    let p = plan(&want(&s, &settings), &item, false, 1, "108");
    assert_eq!(
        wire(&p),
        "type=1&id=108\
         &actor%5B0%5D.tag.tag=Jane%20Doe&actor%5B%5D.tag.tag-=John%2520Roe&actor.locked=1\
         &genre%5B0%5D.tag.tag=Drama\
         &genre%5B%5D.tag.tag-=Sci-Fi%2520%2526%2520Fantasy%2CAction%252C%2520Adventure&genre.locked=1"
    );
}

#[test]
fn unicode_and_reserved_characters_in_names() {
    let mut s = scene();
    s.title = Some("Café — 50% & more, 1+1".into());
    s.tags = vec![tag("日本語"), tag("R&B, Soul"), tag("100% + more"), tag("—")];
    s.performers = vec![];
    let settings = Settings { sync_collection: false, sync_group_collections: false, ..Settings::default() };
    let mut item = synced(&scene(), &settings);
    item.genres = vec!["Drama".into(), "Ünïcode, & 50%+".into()];
    let p = plan(&want(&s, &settings), &item, false, 1, "9");
    let q = wire(&p);
    assert!(q.contains("&title.value=Caf%C3%A9%20%E2%80%94%2050%25%20%26%20more%2C%201%2B1&title.locked=1"), "{q}");
    assert!(
        q.contains(
            "&genre%5B0%5D.tag.tag=%E6%97%A5%E6%9C%AC%E8%AA%9E&genre%5B1%5D.tag.tag=R%26B%2C%20Soul\
             &genre%5B2%5D.tag.tag=100%25%20%2B%20more&genre%5B3%5D.tag.tag=%E2%80%94\
             &genre%5B%5D.tag.tag-=Drama%2C%25C3%259Cn%25C3%25AFcode%252C%2520%2526%252050%2525%252B&genre.locked=1"
        ),
        "{q}"
    );
    // Performers: Stash has none, Plex has one: removal only, and the lock.
    assert!(q.contains("&actor%5B%5D.tag.tag-=Jane%2520Doe&actor.locked=1"), "{q}");
    assert!(!q.contains("actor%5B0%5D"), "{q}");
}

#[test]
fn empty_lists() {
    let settings = Settings { sync_collection: false, sync_group_collections: false, ..Settings::default() };
    let mut s = scene();
    s.tags = vec![];
    s.performers = vec![];
    // Both empty but not locked: only the locks.
    let mut item = synced(&s, &settings);
    item.locked.remove("genre");
    item.locked.remove("actor");
    let p = plan(&want(&s, &settings), &item, false, 1, "1");
    assert_eq!(wire(&p), "type=1&id=1&actor.locked=1&genre.locked=1");
    // Both empty and locked: nothing.
    assert!(plan(&want(&s, &settings), &synced(&s, &settings), false, 1, "1").is_empty());
}

#[test]
fn order_is_kept_and_duplicates_dropped() {
    let mut s = scene();
    s.tags = vec![tag("Zeta"), tag("alpha"), tag("ZETA"), tag("Mid")];
    let settings = Settings {
        sync_collection: false,
        sync_group_collections: false,
        sync_performers: false,
        ..Settings::default()
    };
    let mut item = synced(&scene(), &settings);
    item.genres = vec![];
    let p = plan(&want(&s, &settings), &item, false, 1, "1");
    let genres: Vec<&str> = p
        .query
        .iter()
        .filter(|(k, _)| k.starts_with("genre[") && k.ends_with(".tag.tag"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(genres, ["Zeta", "alpha", "Mid"]);
}

#[test]
fn preserve_mode_only_fills_empty_fields() {
    let settings = Settings {
        preserve_plex_edits: true,
        sync_collection: false,
        sync_group_collections: false,
        ..Settings::default()
    };
    let s = scene();
    let item = PlexItem {
        title: Some("Plex Title".into()),
        studio: Some("Plex Studio".into()),
        genres: vec!["Plex Genre".into()],
        ..PlexItem::default()
    };
    let p = plan(&want(&s, &settings), &item, true, 1, "1");
    assert_eq!(p.changed_names(), ["titleSort", "summary", "tagline", "originallyAvailableAt", "actor"]);
    assert!(!wire(&p).contains("title.value") && !wire(&p).contains("genre"));
    // An empty Stash value never clears Plex in preserve mode.
    let mut bare = s.clone();
    bare.details = None;
    let item = PlexItem { summary: Some("keep me".into()), ..PlexItem::default() };
    assert!(!plan(&want(&bare, &settings), &item, true, 1, "1").changed_names().contains(&"summary"));
}

#[test]
fn a_scene_without_metadata_never_clears_or_removes() {
    let bare = Scene { id: "7".into(), title: Some("clip_0001".into()), ..Scene::default() };
    let settings = Settings::default();
    let item = PlexItem {
        title: Some("Old".into()),
        summary: Some("A good summary".into()),
        studio: Some("Studio".into()),
        originally_available_at: Some("2020-01-01".into()),
        genres: vec!["Drama".into()],
        actors: vec!["Jane".into()],
        user_rating: Some(8.0),
        ..PlexItem::default()
    };
    let w = want(&bare, &Settings { sync_rating: true, ..settings.clone() });
    assert!(!w.meaningful);
    let p = plan(&w, &item, false, 1, "1");
    // Only the title (never a clear) and the sort title are written.
    assert_eq!(p.changed_names(), ["title", "titleSort"]);
    assert!(p.rating.is_none());
}

#[test]
fn rating_changes_go_to_rate_and_clear_with_minus_one() {
    let settings = Settings { sync_rating: true, ..Settings::default() };
    let mut s = scene();
    s.rating100 = Some(85);
    let mut item = synced(&s, &settings);
    let p = plan(&want(&s, &settings), &item, false, 1, "1");
    assert_eq!(p.rating.as_deref(), Some("8.5"));
    assert!(p.query.is_empty(), "a rating change alone needs no PUT");
    item.user_rating = Some(8.5);
    assert!(plan(&want(&s, &settings), &item, false, 1, "1").is_empty());
    s.rating100 = Some(60);
    assert_eq!(plan(&want(&s, &settings), &item, false, 1, "1").rating.as_deref(), Some("6"));
    s.rating100 = None;
    assert_eq!(plan(&want(&s, &settings), &item, false, 1, "1").rating.as_deref(), Some("-1"));
    item.user_rating = None;
    assert!(plan(&want(&s, &settings), &item, false, 1, "1").rating.is_none());
}

#[test]
fn equal_but_unlocked_is_locked() {
    let s = scene();
    let settings = Settings::default();
    let mut item = synced(&s, &settings);
    item.locked.remove("originallyAvailableAt");
    let p = plan(&want(&s, &settings), &item, false, 4, "55");
    assert_eq!(wire(&p), "type=4&id=55&originallyAvailableAt.value=2024-01-15&originallyAvailableAt.locked=1");
}

#[test]
fn read_back_reports_drift() {
    let s = scene();
    let settings = Settings::default();
    let p = plan(&want(&s, &settings), &PlexItem::default(), false, 1, "1");
    let mut back = synced(&s, &settings);
    assert!(drifted(&p.sent, &back).is_empty());
    back.summary = Some("Plex kept its own".into());
    back.genres.push("Extra".into());
    assert_eq!(drifted(&p.sent, &back), ["summary", "genre"]);
}
