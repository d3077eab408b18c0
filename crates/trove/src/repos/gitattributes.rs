//! Which paths go through LFS (the `.gitattributes` `filter=lfs` patterns, as the Hub decides in
//! preupload) and which a `.gitignore` ignores; both use git's own pattern rules.

use ignore::gitignore::{Gitignore, GitignoreBuilder};

/// The `.gitattributes` every new repository starts with: the Hub's usual large-file patterns.
pub const DEFAULT_GITATTRIBUTES: &str = "\
*.7z filter=lfs diff=lfs merge=lfs -text
*.arrow filter=lfs diff=lfs merge=lfs -text
*.bin filter=lfs diff=lfs merge=lfs -text
*.bz2 filter=lfs diff=lfs merge=lfs -text
*.ckpt filter=lfs diff=lfs merge=lfs -text
*.ftz filter=lfs diff=lfs merge=lfs -text
*.gguf filter=lfs diff=lfs merge=lfs -text
*.gz filter=lfs diff=lfs merge=lfs -text
*.h5 filter=lfs diff=lfs merge=lfs -text
*.joblib filter=lfs diff=lfs merge=lfs -text
*.lfs.* filter=lfs diff=lfs merge=lfs -text
*.mlmodel filter=lfs diff=lfs merge=lfs -text
*.model filter=lfs diff=lfs merge=lfs -text
*.msgpack filter=lfs diff=lfs merge=lfs -text
*.npy filter=lfs diff=lfs merge=lfs -text
*.npz filter=lfs diff=lfs merge=lfs -text
*.onnx filter=lfs diff=lfs merge=lfs -text
*.ot filter=lfs diff=lfs merge=lfs -text
*.parquet filter=lfs diff=lfs merge=lfs -text
*.pb filter=lfs diff=lfs merge=lfs -text
*.pickle filter=lfs diff=lfs merge=lfs -text
*.pkl filter=lfs diff=lfs merge=lfs -text
*.pt filter=lfs diff=lfs merge=lfs -text
*.pth filter=lfs diff=lfs merge=lfs -text
*.rar filter=lfs diff=lfs merge=lfs -text
*.safetensors filter=lfs diff=lfs merge=lfs -text
saved_model/**/* filter=lfs diff=lfs merge=lfs -text
*.tar.* filter=lfs diff=lfs merge=lfs -text
*.tar filter=lfs diff=lfs merge=lfs -text
*.tflite filter=lfs diff=lfs merge=lfs -text
*.tgz filter=lfs diff=lfs merge=lfs -text
*.wasm filter=lfs diff=lfs merge=lfs -text
*.xz filter=lfs diff=lfs merge=lfs -text
*.zip filter=lfs diff=lfs merge=lfs -text
*.zst filter=lfs diff=lfs merge=lfs -text
*tfevents* filter=lfs diff=lfs merge=lfs -text
";

/// Files larger than this go through LFS whatever their name (the Hub's 10 MB rule).
pub const LFS_SIZE_THRESHOLD: u64 = 10 * 1000 * 1000;

/// A set of git path patterns.
pub struct PathMatcher(Gitignore);

impl PathMatcher {
    /// The patterns of `.gitattributes` lines that set `filter=lfs` (later `-filter`/`!filter`
    /// lines remove a path again, as git's last-match-wins rule does).
    pub fn lfs_patterns(gitattributes: &str) -> Self {
        let mut builder = GitignoreBuilder::new("");
        for line in gitattributes.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            let Some(pattern) = parts.next() else {
                continue;
            };
            let mut lfs = None;
            for attr in parts {
                match attr {
                    "filter=lfs" => lfs = Some(true),
                    "-filter" | "!filter" => lfs = Some(false),
                    a if a.starts_with("filter=") => lfs = Some(false),
                    _ => {}
                }
            }
            let pattern = match lfs {
                Some(true) => pattern.to_owned(),
                Some(false) => format!("!{pattern}"),
                None => continue,
            };
            // A malformed pattern is skipped, as git skips it.
            let _ = builder.add_line(None, &pattern);
        }
        Self(builder.build().unwrap_or_else(|_| Gitignore::empty()))
    }

    /// The patterns of a `.gitignore` file.
    pub fn gitignore(content: &str) -> Self {
        let mut builder = GitignoreBuilder::new("");
        for line in content.lines() {
            let _ = builder.add_line(None, line);
        }
        Self(builder.build().unwrap_or_else(|_| Gitignore::empty()))
    }

    /// Does a file at `path` (relative to the repo root) match?
    pub fn matches_file(&self, path: &str) -> bool {
        self.0.matched_path_or_any_parents(path, false).is_ignore()
    }
}

/// The preupload decision: LFS when the attributes say so, when the file is large, or when
/// its first bytes look binary (a NUL byte).
pub fn should_use_lfs(lfs: &PathMatcher, path: &str, size: u64, sample: &[u8]) -> bool {
    lfs.matches_file(path) || size > LFS_SIZE_THRESHOLD || sample.contains(&0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_patterns_send_weights_to_lfs() {
        let m = PathMatcher::lfs_patterns(DEFAULT_GITATTRIBUTES);
        for yes in [
            "model.safetensors",
            "a/b/pytorch_model.bin",
            "data/train.parquet",
            "saved_model/x/y.pb",
            "runs/events.out.tfevents.1",
            "x.tar.gz",
        ] {
            assert!(m.matches_file(yes), "{yes}");
        }
        for no in ["config.json", "README.md", "a/b/tokenizer.json", "binary"] {
            assert!(!m.matches_file(no), "{no}");
        }
    }

    #[test]
    fn later_lines_can_unset_lfs() {
        let m = PathMatcher::lfs_patterns(
            "*.bin filter=lfs\nsmall.bin -filter\n# comment\n*.txt text\n",
        );
        assert!(m.matches_file("big.bin"));
        assert!(!m.matches_file("small.bin"));
        assert!(!m.matches_file("a.txt"));
    }

    #[test]
    fn gitignore_rules_apply_to_nested_paths() {
        let m = PathMatcher::gitignore("*.log\nbuild/\n!keep.log\n");
        assert!(m.matches_file("a/b/debug.log"));
        assert!(m.matches_file("build/out.txt"));
        assert!(!m.matches_file("keep.log"));
        assert!(!m.matches_file("src/main.rs"));
    }

    #[test]
    fn size_and_binary_samples_decide_too() {
        let none = PathMatcher::lfs_patterns("");
        assert!(!should_use_lfs(&none, "a.txt", 100, b"hello"));
        assert!(should_use_lfs(
            &none,
            "a.txt",
            LFS_SIZE_THRESHOLD + 1,
            b"hello"
        ));
        assert!(should_use_lfs(&none, "a.dat", 100, b"he\0llo"));
    }
}
