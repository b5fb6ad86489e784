//! Where Plex sees Stash's files, and how paths compare.
//!
//! `plex_path_map` holds rules `stash prefix=>plex prefix`, separated by
//! `;` or line breaks. The rule with the longest Stash prefix that ends on a
//! folder boundary rewrites the start of a path; the rest keeps its
//! folders, with separators turned into the Plex side's (`\` when the Plex
//! prefix is a Windows path). A path no rule covers is used as it is.
//!
//! Comparing paths: on a POSIX Plex server exactly (case-sensitive, `/`);
//! on a Windows Plex server (a library location like `D:\Media`,
//! `\\server\share` or `\\?\D:\Media`) case-insensitively, with `/` and
//! `\` the same, and the extended-length prefix `\\?\` (`\\?\UNC\` for
//! shares) ignored. [`path_key`] gives the form paths are compared in.

/// Stash → Plex prefix rules.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PathMap {
    /// Longest Stash prefix first.
    rules: Vec<(String, String)>,
}

/// A Windows path: `C:\…`, `C:/…`, `\\server\…` or `\\?\…`.
pub fn is_windows_path(p: &str) -> bool {
    let b = p.as_bytes();
    p.starts_with("\\\\") || (b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':')
}

fn is_separator(c: char) -> bool {
    c == '/' || c == '\\'
}

/// The form a path is compared in on a POSIX (`windows = false`) or a
/// Windows Plex server.
pub fn path_key(p: &str, windows: bool) -> String {
    if !windows {
        return p.to_string();
    }
    let s = p.replace('/', "\\");
    let s = if let Some(rest) = s.strip_prefix("\\\\?\\UNC\\") {
        format!("\\\\{rest}")
    } else if let Some(rest) = s.strip_prefix("\\\\?\\") {
        rest.to_string()
    } else {
        s
    };
    s.to_lowercase()
}

/// `rest` of a path after `prefix` if `prefix` covers the path on a folder
/// boundary (Windows prefixes compare as [`path_key`] does).
fn strip_folder_prefix<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let windows = is_windows_path(prefix);
    let (pk, fk) = (path_key(prefix, windows), path_key(path, windows));
    if !fk.starts_with(&pk) {
        return None;
    }
    // Byte offsets agree: path_key only swaps ASCII separators and lowercases
    // (which may change lengths), so find the boundary in the original by
    // counting characters.
    let n = prefix.chars().count();
    let split = path.char_indices().nth(n).map_or(path.len(), |(i, _)| i);
    let rest = &path[split..];
    if rest.is_empty() || rest.starts_with(is_separator) || prefix.ends_with(is_separator) { Some(rest) } else { None }
}

impl PathMap {
    /// Parse `stash=>plex; stash=>plex`. Errors are sentences naming the
    /// setting.
    pub fn parse(text: &str) -> Result<PathMap, String> {
        let mut rules = Vec::new();
        for entry in text.split([';', '\n']).map(str::trim).filter(|e| !e.is_empty()) {
            let Some((stash, plex)) = entry.split_once("=>") else {
                return Err(format!(
                    "plex_path_map: {:?} has no '=>' (write 'stash prefix=>plex prefix', rules separated by ';').",
                    crate::text::clip(entry, 80)
                ));
            };
            let (stash, plex) = (trim_folder(stash.trim()), trim_folder(plex.trim()));
            if stash.is_empty() || plex.is_empty() {
                return Err(format!(
                    "plex_path_map: {:?} needs a folder on both sides of '=>'.",
                    crate::text::clip(entry, 80)
                ));
            }
            rules.push((stash, plex));
        }
        rules.sort_by_key(|r| std::cmp::Reverse(r.0.chars().count()));
        Ok(PathMap { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The path as Plex sees it.
    pub fn to_plex(&self, stash_path: &str) -> String {
        for (stash, plex) in &self.rules {
            let Some(rest) = strip_folder_prefix(stash_path, stash) else { continue };
            let rest = if is_windows_path(plex) { rest.replace('/', "\\") } else { rest.replace('\\', "/") };
            let rest = rest.trim_start_matches(is_separator);
            if rest.is_empty() {
                return plex.clone();
            }
            let sep = if is_windows_path(plex) { '\\' } else { '/' };
            if plex.ends_with(is_separator) {
                return format!("{plex}{rest}");
            }
            return format!("{plex}{sep}{rest}");
        }
        stash_path.to_string()
    }
}

/// Trailing separators removed, except for a root (`/`, `C:\`).
fn trim_folder(p: &str) -> String {
    let t = p.trim_end_matches(is_separator);
    if t.is_empty() {
        return p.chars().next().map(String::from).unwrap_or_default();
    }
    if t.len() == 2 && is_windows_path(t) {
        return format!("{t}\\");
    }
    t.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posix_to_posix_longest_prefix_wins() {
        let m = PathMap::parse("/data=>/media ; /data/x=>/mnt/x/ ;").unwrap();
        assert_eq!(m.to_plex("/data/x/a b.mp4"), "/mnt/x/a b.mp4");
        assert_eq!(m.to_plex("/data/y/c.mp4"), "/media/y/c.mp4");
        // Only on a folder boundary.
        assert_eq!(m.to_plex("/database/c.mp4"), "/database/c.mp4");
        assert_eq!(m.to_plex("/other/c.mp4"), "/other/c.mp4");
    }

    #[test]
    fn posix_to_windows_turns_separators() {
        let m = PathMap::parse("/data/Stash=>D:\\Media\\Stash").unwrap();
        assert_eq!(m.to_plex("/data/Stash/Studio/a.mp4"), "D:\\Media\\Stash\\Studio\\a.mp4");
        let m = PathMap::parse("/data=>\\\\nas\\share").unwrap();
        assert_eq!(m.to_plex("/data/a/b.mkv"), "\\\\nas\\share\\a\\b.mkv");
        let m = PathMap::parse("C:\\Stash=>/media").unwrap();
        assert_eq!(m.to_plex("c:/stash\\Studio\\a.mp4"), "/media/Studio/a.mp4");
        let root = PathMap::parse("/=>/srv/").unwrap();
        assert_eq!(root.to_plex("/a/b.mp4"), "/srv/a/b.mp4");
    }

    #[test]
    fn bad_rules_are_sentences() {
        assert!(PathMap::parse("/data:/media").unwrap_err().contains("has no '=>'"));
        assert!(PathMap::parse("=>/media").unwrap_err().contains("both sides"));
        assert!(PathMap::parse("  ").unwrap().is_empty());
    }

    #[test]
    fn windows_keys_ignore_case_separators_and_the_long_path_prefix() {
        let a = path_key("\\\\?\\D:\\Media\\Film.MKV", true);
        assert_eq!(a, path_key("d:/media/film.mkv", true));
        assert_eq!(path_key("\\\\?\\UNC\\nas\\x\\a.mp4", true), path_key("\\\\NAS\\x\\A.mp4", true));
        // POSIX: exact.
        assert_ne!(path_key("/a/B.mp4", false), path_key("/a/b.mp4", false));
        assert!(is_windows_path("D:\\x") && is_windows_path("\\\\?\\D:\\x") && !is_windows_path("/d/x"));
    }
}
