//! Lenient parsing of Plex Media Server JSON (`{"MediaContainer": …}`).
//!
//! PMS adds fields constantly, omits empty arrays, and mixes types (`hidden:
//! 0` next to `refreshing: false`, `librarySectionID` as a number or a numeric
//! string). So: unknown fields are ignored, every array is optional, a list
//! element of the wrong shape is skipped rather than failing the whole
//! answer, and scalars are read from whatever form they come in. Only text
//! that is not JSON at all, or has no `MediaContainer` object, is an error.

use std::collections::BTreeSet;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::text::clip;

/// The answer was not the JSON Plex normally sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlexJsonError(pub String);

impl std::fmt::Display for PlexJsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed Plex JSON: {}", self.0)
    }
}

// ---------------------------------------------------------------- public shapes

/// One library section (`Directory` of `GET /library/sections`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionInfo {
    pub key: String,
    /// `movie`, `show`, `artist`, `photo`, …
    pub kind: String,
    pub title: String,
    pub locations: Vec<String>,
}

/// One page of `GET /library/sections/{sid}/all`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListingPage {
    pub offset: Option<u64>,
    pub size: Option<u64>,
    pub total_size: Option<u64>,
    pub items: Vec<ListedItem>,
}

/// A list entry: its ratingKey and every `Media[].Part[].file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedItem {
    pub rating_key: String,
    pub files: Vec<String>,
}

/// The full record of one item (`GET /library/metadata/{rk}`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PlexItem {
    pub rating_key: String,
    pub item_type: Option<String>,
    pub title: Option<String>,
    pub summary: Option<String>,
    pub studio: Option<String>,
    pub originally_available_at: Option<String>,
    pub title_sort: Option<String>,
    pub tagline: Option<String>,
    pub content_rating: Option<String>,
    /// 0–10.
    pub user_rating: Option<f64>,
    /// The selected poster and background (absent when the item has none).
    pub thumb: Option<String>,
    pub art: Option<String>,
    pub library_section_id: Option<u64>,
    pub files: Vec<String>,
    /// `Role[].tag`, `Genre[].tag`, `Collection[].tag`, `Label[].tag`.
    pub actors: Vec<String>,
    pub genres: Vec<String>,
    pub collections: Vec<String>,
    pub labels: Vec<String>,
    /// Names of the locked fields (`Field[]` with `locked` true).
    pub locked: BTreeSet<String>,
}

/// One entry of `GET /library/metadata/{rk}/posters` (or `/arts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageEntry {
    /// `upload://posters/<sha1>` for an upload, an agent URL otherwise.
    pub rating_key: String,
    pub selected: bool,
}

/// One entry of `GET /activities`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    /// `library.update.section` for a scan, `library.refresh.items`, …
    pub kind: String,
    /// `Context.librarySectionID`, when Plex says.
    pub section: Option<String>,
}

// ---------------------------------------------------------------- entry points

/// `GET /library/sections`.
pub fn parse_sections(body: &[u8]) -> Result<Vec<SectionInfo>, PlexJsonError> {
    let c: SectionsContainer = container(body)?;
    Ok(c.directories
        .into_iter()
        .filter_map(|d| {
            let key = d.key.filter(|k| !k.is_empty())?;
            Some(SectionInfo {
                key,
                kind: d.kind.unwrap_or_default(),
                title: d.title.unwrap_or_default(),
                locations: d.locations.into_iter().filter_map(|l| l.path).collect(),
            })
        })
        .collect())
}

/// A page of `GET /library/sections/{sid}/all`.
pub fn parse_listing(body: &[u8]) -> Result<ListingPage, PlexJsonError> {
    let c: ItemsContainer = container(body)?;
    Ok(ListingPage {
        offset: c.offset,
        size: c.size,
        total_size: c.total_size,
        items: c
            .metadata
            .into_iter()
            .filter_map(|m| {
                let files = m.files();
                Some(ListedItem { rating_key: m.rating_key.filter(|k| !k.is_empty())?, files })
            })
            .collect(),
    })
}

/// `GET /library/metadata/{rk}`: the first item, `None` if there is none.
pub fn parse_item(body: &[u8]) -> Result<Option<PlexItem>, PlexJsonError> {
    Ok(parse_items(body)?.into_iter().next())
}

/// `GET /library/metadata/{rk1},{rk2},…`: every item, in Plex's order.
pub fn parse_items(body: &[u8]) -> Result<Vec<PlexItem>, PlexJsonError> {
    let c: ItemsContainer = container(body)?;
    let container_section = c.library_section_id;
    Ok(c.metadata
        .into_iter()
        .filter_map(|m| {
            let files = m.files();
            let rating_key = m.rating_key.filter(|k| !k.is_empty())?;
            let names = |tags: Vec<TagRef>| tags.into_iter().filter_map(|t| t.tag).collect::<Vec<_>>();
            Some(PlexItem {
                rating_key,
                item_type: m.kind,
                title: m.title,
                summary: m.summary,
                studio: m.studio,
                originally_available_at: m.originally_available_at,
                title_sort: m.title_sort,
                tagline: m.tagline,
                content_rating: m.content_rating,
                user_rating: m.user_rating,
                thumb: m.thumb,
                art: m.art,
                library_section_id: m.library_section_id.or(container_section),
                files,
                actors: names(m.roles),
                genres: names(m.genres),
                collections: names(m.collections),
                labels: names(m.labels),
                locked: m.fields.into_iter().filter(|f| f.locked).filter_map(|f| f.name).collect(),
            })
        })
        .collect())
}

/// `GET /library/metadata/{rk}/posters` or `/arts`.
pub fn parse_images(body: &[u8]) -> Result<Vec<ImageEntry>, PlexJsonError> {
    let c: ImagesContainer = container(body)?;
    Ok(c.metadata
        .into_iter()
        .filter_map(|m| Some(ImageEntry { rating_key: m.rating_key?, selected: m.selected }))
        .collect())
}

/// `GET /activities`.
pub fn parse_activities(body: &[u8]) -> Result<Vec<Activity>, PlexJsonError> {
    let c: ActivitiesContainer = container(body)?;
    Ok(c.activities
        .into_iter()
        .map(|a| Activity { kind: a.kind.unwrap_or_default(), section: a.context.and_then(|c| c.library_section_id) })
        .collect())
}

fn container<T: DeserializeOwned>(body: &[u8]) -> Result<T, PlexJsonError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(PlexJsonError("empty body".into()));
    }
    let envelope: ObjectOnly<Envelope<T>> =
        serde_json::from_slice(body).map_err(|e| PlexJsonError(clip(&e.to_string(), 200)))?;
    envelope.0.media_container.map(|c| c.0).ok_or_else(|| PlexJsonError("no MediaContainer object".into()))
}

/// `T` read only from a JSON object: serde's derive also reads a struct
/// from an array, field by field, which no Plex answer is.
struct ObjectOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Objects<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Objects<T> {
            type Value = ObjectOnly<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(ObjectOnly)
            }
        }
        d.deserialize_map(Objects(std::marker::PhantomData))
    }
}

// ---------------------------------------------------------------- wire shapes

#[derive(Deserialize)]
struct Envelope<T> {
    #[serde(rename = "MediaContainer", default = "none")]
    media_container: Option<ObjectOnly<T>>,
}

fn none<T>() -> Option<T> {
    None
}

#[derive(Deserialize)]
struct SectionsContainer {
    #[serde(rename = "Directory", default, deserialize_with = "list")]
    directories: Vec<Directory>,
}

#[derive(Deserialize)]
struct Directory {
    #[serde(default, deserialize_with = "string")]
    key: Option<String>,
    #[serde(rename = "type", default, deserialize_with = "string")]
    kind: Option<String>,
    #[serde(default, deserialize_with = "string")]
    title: Option<String>,
    #[serde(rename = "Location", default, deserialize_with = "list")]
    locations: Vec<Location>,
}

#[derive(Deserialize)]
struct Location {
    #[serde(default, deserialize_with = "string")]
    path: Option<String>,
}

#[derive(Deserialize)]
struct ItemsContainer {
    #[serde(default, deserialize_with = "number")]
    offset: Option<u64>,
    #[serde(default, deserialize_with = "number")]
    size: Option<u64>,
    #[serde(rename = "totalSize", default, deserialize_with = "number")]
    total_size: Option<u64>,
    #[serde(rename = "librarySectionID", default, deserialize_with = "number")]
    library_section_id: Option<u64>,
    #[serde(rename = "Metadata", default, deserialize_with = "list")]
    metadata: Vec<Metadata>,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(rename = "ratingKey", default, deserialize_with = "string")]
    rating_key: Option<String>,
    #[serde(rename = "type", default, deserialize_with = "string")]
    kind: Option<String>,
    #[serde(default, deserialize_with = "string")]
    title: Option<String>,
    #[serde(default, deserialize_with = "string")]
    summary: Option<String>,
    #[serde(default, deserialize_with = "string")]
    studio: Option<String>,
    #[serde(rename = "originallyAvailableAt", default, deserialize_with = "string")]
    originally_available_at: Option<String>,
    #[serde(rename = "titleSort", default, deserialize_with = "string")]
    title_sort: Option<String>,
    #[serde(default, deserialize_with = "string")]
    tagline: Option<String>,
    #[serde(rename = "contentRating", default, deserialize_with = "string")]
    content_rating: Option<String>,
    #[serde(rename = "userRating", default, deserialize_with = "float")]
    user_rating: Option<f64>,
    #[serde(default, deserialize_with = "string")]
    thumb: Option<String>,
    #[serde(default, deserialize_with = "string")]
    art: Option<String>,
    #[serde(rename = "librarySectionID", default, deserialize_with = "number")]
    library_section_id: Option<u64>,
    #[serde(rename = "Media", default, deserialize_with = "list")]
    media: Vec<Media>,
    #[serde(rename = "Role", default, deserialize_with = "list")]
    roles: Vec<TagRef>,
    #[serde(rename = "Genre", default, deserialize_with = "list")]
    genres: Vec<TagRef>,
    #[serde(rename = "Collection", default, deserialize_with = "list")]
    collections: Vec<TagRef>,
    #[serde(rename = "Label", default, deserialize_with = "list")]
    labels: Vec<TagRef>,
    #[serde(rename = "Field", default, deserialize_with = "list")]
    fields: Vec<FieldLock>,
}

#[derive(Deserialize)]
struct TagRef {
    #[serde(default, deserialize_with = "string")]
    tag: Option<String>,
}

#[derive(Deserialize)]
struct ImagesContainer {
    #[serde(rename = "Metadata", default, deserialize_with = "list")]
    metadata: Vec<ImageMeta>,
}

#[derive(Deserialize)]
struct ImageMeta {
    #[serde(rename = "ratingKey", default, deserialize_with = "string")]
    rating_key: Option<String>,
    #[serde(default, deserialize_with = "boolean")]
    selected: bool,
}

#[derive(Deserialize)]
struct ActivitiesContainer {
    #[serde(rename = "Activity", default, deserialize_with = "list")]
    activities: Vec<ActivityJson>,
}

#[derive(Deserialize)]
struct ActivityJson {
    #[serde(rename = "type", default, deserialize_with = "string")]
    kind: Option<String>,
    #[serde(rename = "Context", default)]
    context: Option<ActivityContext>,
}

#[derive(Deserialize)]
struct ActivityContext {
    #[serde(rename = "librarySectionID", default, deserialize_with = "string")]
    library_section_id: Option<String>,
}

impl Metadata {
    fn files(&self) -> Vec<String> {
        self.media.iter().flat_map(|m| m.parts.iter()).filter_map(|p| p.file.clone()).collect()
    }
}

#[derive(Deserialize)]
struct Media {
    #[serde(rename = "Part", default, deserialize_with = "list")]
    parts: Vec<Part>,
}

#[derive(Deserialize)]
struct Part {
    #[serde(default, deserialize_with = "string")]
    file: Option<String>,
}

#[derive(Deserialize)]
struct FieldLock {
    #[serde(default, deserialize_with = "string")]
    name: Option<String>,
    /// `Field` lists only locked fields, so an entry without `locked` is one.
    #[serde(default = "yes", deserialize_with = "boolean")]
    locked: bool,
}

fn yes() -> bool {
    true
}

// ---------------------------------------------------------------- lenient readers

/// An array (elements of the wrong shape, arrays and scalars included,
/// skipped), a single object, or anything else as empty.
fn list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Array(items)) => {
            items.into_iter().filter(Value::is_object).filter_map(|item| T::deserialize(item).ok()).collect()
        }
        Some(object @ Value::Object(_)) => T::deserialize(object).ok().into_iter().collect(),
        _ => Vec::new(),
    })
}

/// A string, or a number/bool written as text; anything else is absent.
fn string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::Bool(b)) => Some(b.to_string()),
        _ => None,
    })
}

/// A non-negative integer, from a number or a numeric string.
fn number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Number(n)) => {
            n.as_u64().or_else(|| n.as_f64().filter(|x| *x >= 0.0 && x.fract() == 0.0 && *x < 9.0e15).map(|x| x as u64))
        }
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

/// A finite number, from a number or a numeric string.
fn float<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|x: &f64| x.is_finite()))
}

/// `true`/`false`, a number (non-zero = true) or text (`1`, `true`, `yes`).
fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Bool(b)) => b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|x| x != 0.0),
        Some(Value::String(s)) => matches!(s.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes"),
        _ => false,
    })
}

#[cfg(test)]
#[path = "fuzz/plex_json.rs"]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE_A: &str = r#"{"MediaContainer":{"size":2,"allowSync":false,"title1":"Plex Library","Directory":[
      {"allowSync":true,"art":"/:/resources/movie-fanart.jpg","filters":true,"refreshing":false,
       "key":"1","type":"movie","title":"Movies","agent":"tv.plex.agents.movie","hidden":0,
       "Location":[{"id":18,"path":"/data/Movies"}]},
      {"key":"2","type":"show","title":"TV Shows","refreshing":false,
       "Location":[{"id":32,"path":"/data/TV Shows"},{"id":33,"path":"/mnt/more tv"}]}]}}"#;

    const EXAMPLE_B: &str = r#"{"MediaContainer":{"size":1,"totalSize":358,"offset":0,"librarySectionID":1,
      "Metadata":[{"ratingKey":"108","key":"/library/metadata/108","type":"movie","title":"Interstate 60",
        "Media":[{"id":96,"Part":[{"id":96,"file":"/data/Movies/Interstate 60 (2002).mkv"}]},
                 {"id":97,"Part":[{"id":97,"file":"/data/Movies/Interstate 60 (2002) 4K.mkv"}]}],
        "Genre":[{"tag":"Adventure"}]}]}}"#;

    const EXAMPLE_C: &str = r#"{"MediaContainer":{"size":1,"librarySectionID":1,
      "Metadata":[{"ratingKey":"108","type":"movie","title":"Interstate 60: Episodes of the Road",
        "studio":"Fireworks Pictures","summary":"An aspiring painter…","originallyAvailableAt":"2002-04-13",
        "Media":[{"id":96,"Part":[{"id":96,"file":"/data/Movies/Interstate 60 (2002).mkv",
                 "Stream":[{"id":87}]}]}],
        "Field":[{"locked":true,"name":"title"},{"locked":"1","name":"genre"},{"locked":false,"name":"studio"},
                 {"name":"thumb"}]}]}}"#;

    #[test]
    fn sections_example_a() {
        let s = parse_sections(EXAMPLE_A.as_bytes()).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].key, "1");
        assert_eq!(s[0].kind, "movie");
        assert_eq!(s[0].locations, vec!["/data/Movies"]);
        assert_eq!(s[1].title, "TV Shows");
        assert_eq!(s[1].locations, vec!["/data/TV Shows", "/mnt/more tv"]);
    }

    #[test]
    fn listing_example_b_collects_every_part() {
        let p = parse_listing(EXAMPLE_B.as_bytes()).unwrap();
        assert_eq!(p.total_size, Some(358));
        assert_eq!(p.offset, Some(0));
        assert_eq!(p.items.len(), 1);
        assert_eq!(p.items[0].rating_key, "108");
        assert_eq!(p.items[0].files.len(), 2);
    }

    #[test]
    fn empty_page_has_no_metadata_key() {
        let p = parse_listing(br#"{"MediaContainer":{"size":0}}"#).unwrap();
        assert!(p.items.is_empty());
        assert_eq!(p.size, Some(0));
    }

    #[test]
    fn item_example_c_with_locks() {
        let item = parse_item(EXAMPLE_C.as_bytes()).unwrap().unwrap();
        assert_eq!(item.rating_key, "108");
        assert_eq!(item.library_section_id, Some(1));
        assert_eq!(item.studio.as_deref(), Some("Fireworks Pictures"));
        assert_eq!(item.originally_available_at.as_deref(), Some("2002-04-13"));
        let locked: Vec<&str> = item.locked.iter().map(String::as_str).collect();
        // studio has locked:false; thumb has no `locked` and counts as locked.
        assert_eq!(locked, vec!["genre", "thumb", "title"]);
        assert_eq!(item.files, vec!["/data/Movies/Interstate 60 (2002).mkv"]);
    }

    #[test]
    fn full_item_tags_rating_and_images() {
        let body = br#"{"MediaContainer":{"size":2,"librarySectionID":1,"Metadata":[
            {"ratingKey":"108","type":"movie","title":"T","titleSort":"S","tagline":"G","contentRating":"R",
             "userRating":8.5,"thumb":"/library/metadata/108/thumb/1","art":"/library/metadata/108/art/1",
             "Genre":[{"id":1,"tag":"Drama"},{"id":2,"tag":"Sci-Fi & Fantasy"}],
             "Role":[{"id":3,"tag":"Jane","role":"Herself"}],"Collection":[{"tag":"Studio X"}],
             "Label":[{"tag":"Stash"}]},
            {"ratingKey":"109","type":"episode","userRating":"7"}]}}"#;
        let items = parse_items(body).unwrap();
        assert_eq!(items.len(), 2);
        let a = &items[0];
        assert_eq!(
            (a.title_sort.as_deref(), a.tagline.as_deref(), a.content_rating.as_deref()),
            (Some("S"), Some("G"), Some("R"))
        );
        assert_eq!(a.user_rating, Some(8.5));
        assert_eq!(a.genres, ["Drama", "Sci-Fi & Fantasy"]);
        assert_eq!(a.actors, ["Jane"]);
        assert_eq!(a.collections, ["Studio X"]);
        assert_eq!(a.labels, ["Stash"]);
        assert!(a.thumb.is_some() && a.art.is_some());
        assert_eq!(items[1].user_rating, Some(7.0));
        assert_eq!(items[1].library_section_id, Some(1));
    }

    #[test]
    fn posters_and_activities() {
        let body = br#"{"MediaContainer":{"size":2,"Metadata":[
            {"key":"/library/metadata/108/file?url=upload%3A%2F%2Fposters%2F9f70","ratingKey":"upload://posters/9f70","selected":true},
            {"key":"https://image.tmdb.org/t/p/original/abc.jpg","ratingKey":"https://image.tmdb.org/abc.jpg","selected":false}]}}"#;
        let images = parse_images(body).unwrap();
        assert_eq!(
            images,
            vec![
                ImageEntry { rating_key: "upload://posters/9f70".into(), selected: true },
                ImageEntry { rating_key: "https://image.tmdb.org/abc.jpg".into(), selected: false },
            ]
        );
        let body = br#"{"MediaContainer":{"size":1,"Activity":[{"uuid":"u","type":"library.update.section",
            "title":"Scanning","progress":0,"Context":{"librarySectionID":"3"}}]}}"#;
        let acts = parse_activities(body).unwrap();
        assert_eq!(acts, vec![Activity { kind: "library.update.section".into(), section: Some("3".into()) }]);
        assert!(parse_activities(br#"{"MediaContainer":{"size":0}}"#).unwrap().is_empty());
    }

    #[test]
    fn odd_types_are_tolerated() {
        let body = br#"{"MediaContainer":{"librarySectionID":"7","totalSize":"3",
            "Metadata":[{"ratingKey":5,"Media":{"Part":[{"file":"/a.mkv"},"junk"]},"Field":null},
                        "not an object", {"title":"no rating key"}]}}"#;
        let p = parse_listing(body).unwrap();
        assert_eq!(p.total_size, Some(3));
        assert_eq!(p.items.len(), 1);
        assert_eq!(p.items[0].rating_key, "5");
        assert_eq!(p.items[0].files, vec!["/a.mkv"]);
        let item = parse_item(body).unwrap().unwrap();
        assert_eq!(item.library_section_id, Some(7));
        assert!(item.locked.is_empty());
    }

    /// Found by the Plex JSON fuzz target: serde's derive reads a struct
    /// from an array by position, so `[{"Metadata": …}]`, a
    /// `MediaContainer` array or a `Metadata` entry written as an array
    /// were read as Plex answers and items.
    #[test]
    fn arrays_are_not_containers_nor_items() {
        assert!(parse_listing(br#"[{"Metadata":[{"ratingKey":"1"}]}]"#).is_err());
        let e = parse_listing(br#"{"MediaContainer":[0,0,0,0,[{"ratingKey":"1"}]]}"#).unwrap_err();
        assert!(e.0.contains("a JSON object"), "{e}");
        let p = parse_listing(br#"{"MediaContainer":{"Metadata":[["5"],{"ratingKey":"6"}]}}"#).unwrap();
        assert_eq!(p.items.iter().map(|i| i.rating_key.as_str()).collect::<Vec<_>>(), ["6"]);
    }

    #[test]
    fn malformed_answers_are_typed_errors() {
        assert!(parse_item(b"<html>401 Unauthorized</html>").is_err());
        assert!(parse_item(b"").is_err());
        assert!(parse_item(b"{\"Other\":1}").unwrap_err().0.contains("MediaContainer"));
        assert!(parse_sections(b"{\"MediaContainer\":").is_err());
        assert_eq!(parse_item(br#"{"MediaContainer":{"size":0}}"#).unwrap(), None);
    }
}
