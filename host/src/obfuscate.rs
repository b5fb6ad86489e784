//! Path obfuscation for logs (`obfuscate_paths`): every path segment becomes
//! a word chosen by a hash of the segment, so a log stays readable ("the
//! same folder again") without revealing names. The extension is kept.
//! Stable across runs and processes: the word depends only on the segment
//! (SHA-256 based), collisions are told apart with a short hash suffix.

use sha2::{Digest, Sha256};

const WORDS: [&str; 64] = [
    "Crimson", "Azure", "Emerald", "Golden", "Silver", "Violet", "Amber", "Coral", "Ivory", "Onyx", "Scarlet", "Teal",
    "Copper", "Indigo", "Jade", "Maroon", "Sage", "Bronze", "Cobalt", "Pearl", "Tiger", "Phoenix", "Falcon", "Raven",
    "Wolf", "Eagle", "Cobra", "Panther", "Lynx", "Hawk", "Otter", "Viper", "Crane", "Bison", "Fox", "Owl", "Elk",
    "Bear", "Lion", "Dove", "Atlas", "Beacon", "Cipher", "Delta", "Echo", "Forge", "Granite", "Harbor", "Icon",
    "Jetty", "Keystone", "Lantern", "Meridian", "Nexus", "Orbit", "Prism", "Quartz", "Ridge", "Summit", "Torch",
    "Vault", "Zenith", "Apex", "Bastion",
];

#[derive(Clone, Debug, Default)]
pub struct Obfuscator {
    pub enabled: bool,
}

impl Obfuscator {
    pub fn new(enabled: bool) -> Obfuscator {
        Obfuscator { enabled }
    }

    pub fn path(&self, path: &str) -> String {
        if !self.enabled || path.is_empty() {
            return path.to_string();
        }
        let sep = if path.contains('\\') && !path.contains('/') { '\\' } else { '/' };
        let parts: Vec<&str> = path.split(sep).collect();
        let last = parts.len() - 1;
        parts
            .iter()
            .enumerate()
            .map(|(i, seg)| {
                if seg.is_empty() {
                    String::new()
                } else if i == last {
                    match seg.rsplit_once('.') {
                        Some((stem, ext)) if !stem.is_empty() && ext.len() <= 5 => format!("{}.{ext}", word(stem)),
                        _ => word(seg),
                    }
                } else {
                    word(seg)
                }
            })
            .collect::<Vec<_>>()
            .join(&sep.to_string())
    }
}

fn word(segment: &str) -> String {
    let digest = Sha256::digest(segment.as_bytes());
    let w = WORDS[(digest[0] as usize) % WORDS.len()];
    format!("{w}-{:02x}{:02x}", digest[1], digest[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_every_segment_keeps_shape_and_extension() {
        let o = Obfuscator::new(true);
        let out = o.path("/media/videos/Studio Name/scene-title.mp4");
        assert!(out.starts_with('/'));
        assert!(out.ends_with(".mp4"));
        assert_eq!(out.matches('/').count(), 4);
        for secret in ["media", "videos", "Studio", "scene"] {
            assert!(!out.contains(secret), "{out}");
        }
        assert_eq!(out, o.path("/media/videos/Studio Name/scene-title.mp4"), "stable");
        assert_ne!(o.path("/a/x.mp4"), o.path("/b/x.mp4"));
    }

    #[test]
    fn disabled_is_identity() {
        assert_eq!(Obfuscator::new(false).path("/a/b.mp4"), "/a/b.mp4");
    }

    #[test]
    fn windows_paths() {
        let out = Obfuscator::new(true).path(r"D:\Videos\clip.mkv");
        assert!(out.ends_with(".mkv") && out.matches('\\').count() == 2 && !out.contains("Videos"), "{out}");
    }
}
