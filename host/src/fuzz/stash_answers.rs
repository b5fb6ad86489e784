//! Fuzz target: Stash's GraphQL answers as the host reads them
//! (`net::stash`: a scene → the WIT scene, a page of scenes, the scene-id
//! pages of Sync All/Recent, the plugin's settings, the watcher's
//! configuration + job queue) and the Stash image URLs the host fetches
//! (`image_route`), seeded from
//! `tests/fuzz/corpus/stash_graphql/`.
//!
//! Properties: never a panic; 401/403 is always `Unauthorized`, another
//! non-2xx never passes as data; an error is a typed [`StashError`] of
//! bounded length that never repeats the API key or a plugin setting's
//! secret; a scene of any field values reads back exactly as the WIT scene
//! (ids as text, rating clamped, sizes as numbers or text); an image URL is
//! fetched only from Stash's image routes with at most a `t` cache-buster.

use super::*;
use proptest::prelude::*;
use serde_json::json;
use stash2plex_testkit::fuzz;

/// A refusal the policy and the log get: a sentence and clipped details.
const MAX_ERROR_CHARS: usize = 1500;

fn statuses() -> impl Strategy<Value = u16> {
    prop_oneof![6 => Just(200u16), 1 => prop::sample::select(vec![201u16, 204, 301, 400, 401, 403, 404, 422, 500, 502, 503])]
}

/// Every reader of an answer, on one body.
fn read_every_way(status: u16, body: &[u8]) -> Vec<Result<String, StashError>> {
    vec![
        read_answer::<FindSceneData>(status, body).and_then(FindSceneData::scene).map(|s| format!("{s:?}")),
        read_answer::<FindScenesData>(status, body).and_then(FindScenesData::page).map(|p| format!("{p:?}")),
        read_answer::<SceneIdsData>(status, body).and_then(SceneIdsData::rows).map(|r| format!("{r:?}")),
        read_answer::<ConfigurationData>(status, body)
            .and_then(|d| d.plugin_settings("stash2plex"))
            .map(|(m, k)| format!("{} settings, key {}", m.len(), k.is_some())),
        read_answer::<WatchData>(status, body).map(|d| format!("{:?}", d.settings_and_busy("stash2plex"))),
    ]
}

fn check_error(e: &StashError, status: u16, secret: Option<&str>) -> Result<(), TestCaseError> {
    let text = e.to_string();
    let n = text.chars().count();
    prop_assert!(n <= MAX_ERROR_CHARS, "a {n}-char error: {}", text.chars().take(300).collect::<String>());
    if status == 401 || status == 403 {
        prop_assert_eq!(e, &StashError::Unauthorized(status));
    }
    if let Some(secret) = secret {
        prop_assert!(!text.contains(secret), "the error repeats a secret: {text}");
    }
    Ok(())
}

/// Configuration answers whose API key and plugin token are `secret`,
/// mutated, sometimes cut short or with the secret in a wrong-typed place.
fn secret_answers() -> impl Strategy<Value = (String, Vec<u8>)> {
    (fuzz::secret(), 0u8..5, any::<prop::sample::Index>()).prop_flat_map(|(secret, misplace, cut)| {
        let general = match misplace {
            0 => json!(secret),
            1 => json!({"apiKey": [secret]}),
            _ => json!({"apiKey": secret}),
        };
        let seed = json!({"data": {"configuration": {"general": general, "plugins": {"stash2plex": {
            "plex_token": secret, "plex_url": format!("http://plex:32400/?X-Plex-Token={secret}")}}},
            "jobQueue": null}});
        let truncate = misplace == 3;
        (Just(secret), fuzz::mutate(seed)).prop_map(move |(secret, v)| {
            let mut bytes = serde_json::to_vec(&v).unwrap_or_default();
            if truncate {
                bytes.truncate(cut.index(bytes.len().max(1)));
            }
            (secret, bytes)
        })
    })
}

// ---- well-formed scenes ----------------------------------------------------

/// An id as Stash writes it (text) or as an older or other server might (a number).
fn ids() -> impl Strategy<Value = (Value, String)> {
    prop_oneof![
        any::<u64>().prop_map(|n| (json!(n.to_string()), n.to_string())),
        any::<u64>().prop_map(|n| (json!(n), n.to_string())),
        any::<i64>().prop_map(|n| (json!(n), n.to_string())),
        fuzz::nasty_string().prop_map(|s| (json!(s), s)),
    ]
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    prop::option::of(fuzz::nasty_string())
}

/// A file size as Stash writes it (Int64), as text, or odd.
fn sizes() -> impl Strategy<Value = (Value, u64)> {
    prop_oneof![
        any::<u64>().prop_map(|n| (json!(n), n)),
        any::<u64>().prop_map(|n| (json!(n.to_string()), n)),
        any::<i64>().prop_map(|n| (json!(n), u64::try_from(n).unwrap_or(0))),
        Just((json!(null), 0)),
        Just((json!(1.5), 0)),
        Just((json!("12 MB"), 0)),
    ]
}

/// A scene in Stash's JSON shape and the WIT scene it must become.
fn scenes() -> impl Strategy<Value = (Value, wit::Scene)> {
    let files = prop::collection::vec(
        (fuzz::nasty_string(), sizes(), prop::option::of(any::<f64>().prop_filter("finite", |d| d.is_finite()))),
        0..3,
    );
    let studio = prop::option::of((ids(), fuzz::nasty_string(), opt_text()));
    let performers = prop::collection::vec((ids(), fuzz::nasty_string(), opt_text(), opt_text(), opt_text()), 0..4);
    let tags = prop::collection::vec((ids(), fuzz::nasty_string()), 0..4);
    let groups =
        (prop::collection::vec((prop::option::of(any::<i64>()), ids(), fuzz::nasty_string()), 0..3), any::<bool>());
    let texts = (ids(), opt_text(), opt_text(), opt_text(), opt_text(), opt_text());
    let misc = (
        prop::option::of(any::<i64>()),
        prop::option::of(any::<bool>()),
        prop::collection::vec(fuzz::nasty_string(), 0..3),
        opt_text(),
        opt_text(),
        opt_text(),
    );
    (texts, misc, files, studio, performers, tags, groups).prop_map(
        |(
            (id, title, code, details, director, date),
            (rating, organized, urls, shot, created, updated),
            files,
            studio,
            performers,
            tags,
            (groups, old),
        )| {
            let json_files: Vec<Value> =
                files.iter().map(|(p, (size, _), d)| json!({"path": p, "size": size, "duration": d})).collect();
            let json_studio = studio.as_ref().map(|((sid, _), name, parent)| {
                json!({"id": sid, "name": name, "parent_studio": parent.as_ref().map(|p| json!({"name": p}))})
            });
            let json_performers: Vec<Value> = performers
                .iter()
                .map(|((pid, _), name, dis, gender, image)| {
                    json!({"id": pid, "name": name, "disambiguation": dis, "gender": gender, "image_path": image})
                })
                .collect();
            let json_tags: Vec<Value> = tags.iter().map(|((tid, _), name)| json!({"id": tid, "name": name})).collect();
            let (list_key, item_key) = if old { ("movies", "movie") } else { ("groups", "group") };
            let json_groups: Vec<Value> = groups
                .iter()
                .map(|(index, (gid, _), name)| {
                    let mut g = json!({"scene_index": index});
                    g[item_key] = json!({"id": gid, "name": name});
                    g
                })
                .collect();
            let mut scene = json!({
                "id": id.0, "title": title, "code": code, "details": details, "director": director, "date": date,
                "rating100": rating, "organized": organized, "urls": urls, "created_at": created,
                "updated_at": updated, "files": json_files, "paths": {"screenshot": shot},
                "studio": json_studio, "performers": json_performers, "tags": json_tags,
            });
            scene[list_key] = Value::Array(json_groups);
            let expected = wit::Scene {
                id: id.1,
                title,
                code,
                details,
                director,
                date,
                rating100: rating.map(|r| u8::try_from(r.clamp(0, 100)).unwrap_or(0)),
                organized: organized.unwrap_or(false),
                urls,
                studio: studio.map(|((_, sid), name, parent_name)| wit::Studio { id: sid, name, parent_name }),
                performers: performers
                    .into_iter()
                    .map(|((_, pid), name, dis, gender, image_url)| wit::Performer {
                        id: pid,
                        name,
                        disambiguation: dis.filter(|d| !d.is_empty()),
                        gender,
                        image_url,
                    })
                    .collect(),
                tags: tags.into_iter().map(|((_, tid), name)| wit::Tag { id: tid, name }).collect(),
                groups: groups
                    .into_iter()
                    .map(|(index, (_, gid), name)| wit::Group {
                        id: gid,
                        name,
                        scene_index: index.and_then(|i| i32::try_from(i).ok()),
                    })
                    .collect(),
                files: files
                    .into_iter()
                    .map(|(path, (_, size), d)| wit::VideoFile { path, size, duration_secs: d.unwrap_or(0.0) })
                    .collect(),
                screenshot_url: shot,
                created_at: created.unwrap_or_default(),
                updated_at: updated.unwrap_or_default(),
            };
            (scene, expected)
        },
    )
}

// ---- image URLs ------------------------------------------------------------

/// A Stash image URL as a look-up hands it out: (origin, path, query).
fn image_parts() -> impl Strategy<Value = (String, String, String)> {
    (
        prop::sample::select(vec!["http", "https"]),
        prop::sample::select(vec!["127.0.0.1", "localhost", "stash.lan", "[::1]", "10.0.0.5"]),
        prop::option::of(any::<u16>()),
        prop::sample::select(IMAGE_ROUTES.to_vec()),
        "[0-9]{1,20}",
        prop::option::of("[0-9]{1,20}"),
    )
        .prop_map(|(scheme, host, port, route, id, t)| {
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            let query = t.map(|t| format!("?t={t}")).unwrap_or_default();
            (format!("{scheme}://{host}{port}"), route.replace("{id}", &id), query)
        })
}

/// A Stash image URL and the path and query fetched for it.
fn image_urls() -> impl Strategy<Value = (String, String)> {
    image_parts().prop_map(|(origin, path, query)| (format!("{origin}{path}{query}"), format!("{path}{query}")))
}

/// Changes that each take an image URL off Stash's image routes.
fn off_route(origin: &str, path: &str, query: &str) -> Vec<String> {
    let q = query.strip_prefix('?').map(|q| format!("&{q}")).unwrap_or_default();
    vec![
        format!("{origin}{path}/../../graphql{query}"),
        format!("{origin}{path}/{query}"),
        format!("{origin}{path}?apikey=x{q}"),
        format!("{origin}{path}?t=1&t=2&query=configuration"),
        format!("{origin}{path}?T=1"),
        format!("{origin}{path}?t=x1"),
        format!("{origin}/..{path}{query}"),
        format!("{origin}{path}s{query}"),
        format!("{origin}{}{query}", path.to_uppercase()),
        format!("{origin}{path}%2F..%2Fgraphql{query}"),
        format!("{origin}/{path}{query}"),
        format!("{origin}{}{query}", path.replacen('/', "/%2e%2e/", 2)),
        format!("{origin}/graphql?q={path}"),
    ]
}

proptest! {
    #![proptest_config(fuzz::config(500))]

    #[test]
    fn fuzz_graphql_answers_are_data_or_typed_errors(
        status in statuses(),
        body in fuzz::input_bytes(fuzz::corpus_json("stash_graphql")),
    ) {
        for read in read_every_way(status, &body) {
            match read {
                Ok(_) => prop_assert!((200..300).contains(&status), "HTTP {status} passed as data"),
                Err(e) => check_error(&e, status, None)?,
            }
        }
    }

    #[test]
    fn fuzz_graphql_errors_never_repeat_the_api_key_or_a_setting((secret, body) in secret_answers(), status in statuses()) {
        for read in read_every_way(status, &body) {
            if let Err(e) = read {
                check_error(&e, status, Some(&secret))?;
            }
        }
    }

    #[test]
    fn fuzz_graphql_a_scene_of_any_values_reads_back_exactly((scene, expected) in scenes()) {
        let body = serde_json::to_vec(&json!({"data": {"findScene": scene}})).unwrap_or_default();
        let mut got = read_answer::<FindSceneData>(200, &body)
            .and_then(FindSceneData::scene)
            .map_err(|e| TestCaseError::fail(e.to_string()))?
            .ok_or_else(|| TestCaseError::fail("no scene"))?;
        for (g, e) in got.files.iter_mut().zip(&expected.files) {
            prop_assert!(fuzz::close(g.duration_secs, e.duration_secs), "{} vs {}", g.duration_secs, e.duration_secs);
            g.duration_secs = e.duration_secs;
        }
        prop_assert_eq!(format!("{got:?}"), format!("{expected:?}"));
        let page = json!({"data": {"findScenes": {"count": 7, "scenes": [scene.clone(), scene]}}});
        let got = read_answer::<FindScenesData>(200, &serde_json::to_vec(&page).unwrap_or_default())
            .and_then(FindScenesData::page)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(got.count, 7);
        prop_assert_eq!(got.scenes.len(), 2);
        prop_assert_eq!(got.scenes.iter().map(|s| s.id.clone()).collect::<Vec<_>>(), vec![expected.id.clone(), expected.id]);
    }

    #[test]
    fn fuzz_graphql_plugin_settings_read_back_exactly(
        settings in prop::collection::btree_map(fuzz::nasty_string(), fuzz::json_value(), 0..6),
        key in prop::option::of(fuzz::nasty_string()),
    ) {
        let settings: Map<String, Value> = settings.into_iter().collect();
        let body = json!({"data": {"configuration": {"general": {"apiKey": key}, "plugins": {"stash2plex": settings}}}});
        let data = read_answer::<ConfigurationData>(200, &serde_json::to_vec(&body).unwrap_or_default())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let (got, got_key) = data.plugin_settings("stash2plex").map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(fuzz::same_json(&Value::Object(got.clone()), &Value::Object(settings.clone())), "{got:?} vs {settings:?}");
        prop_assert_eq!(got_key, key.filter(|k| !k.is_empty()));
    }

    #[test]
    fn fuzz_image_urls_only_stash_image_routes((origin, path, query) in image_parts(), pick in any::<prop::sample::Index>()) {
        prop_assert_eq!(image_route(&format!("{origin}{path}{query}")), Ok(format!("{path}{query}")));
        let misses = off_route(&origin, &path, &query);
        let miss = &misses[pick.index(misses.len())];
        if let Ok(p) = image_route(miss) {
            // Only a change that kept a valid route may pass (none of these should).
            prop_assert!(false, "{miss} passed as {p}");
        }
    }

    #[test]
    fn fuzz_image_urls_from_any_text(url in prop_oneof![fuzz::nasty_string(), image_urls().prop_map(|(u, _)| u)]) {
        if let Ok(p) = image_route(&url) {
            let route_ok = IMAGE_ROUTES.iter().any(|r| {
                let (pre, post) = r.split_once("{id}").unwrap_or((r, ""));
                let path = p.split('?').next().unwrap_or("");
                path.strip_prefix(pre).and_then(|x| x.strip_suffix(post)).is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
            });
            prop_assert!(route_ok, "{url} → {p}");
            prop_assert!(p.split('?').nth(1).is_none_or(|q| q.split('&').all(|kv| kv.starts_with("t="))), "{p}");
        }
    }
}

#[test]
fn fuzz_graphql_corpus_seeds_all_read() {
    let seeds = fuzz::corpus("stash_graphql");
    let readable = seeds.iter().filter(|s| read_every_way(200, s).iter().any(Result::is_ok)).count();
    assert_eq!(readable, seeds.len() - 1, "every seed but the error answer reads as something");
}
