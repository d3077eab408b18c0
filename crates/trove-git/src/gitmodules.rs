//! `.gitmodules` as git's own checks (`fsck`, run on every push that brings one: see
//! [`crate::PushView::new_objects`]) read it: a file that git would refuse on a push must not enter a repository through the
//! commit API either, or every later push to that repository would be refused for it.
//!
//! The rules are git's: the file parses as git config; a submodule's name is not a path that
//! climbs (`..`) or starts at the root; its `url` and `path` do not look like command-line
//! options (`-…`, also right after a URL's scheme); its `update` is not a command (`!…`).

/// The largest `.gitmodules` accepted; real ones are a few hundred bytes.
pub const GITMODULES_MAX_BYTES: usize = 64 * 1024;

/// Whether a tree entry name is `.gitmodules` as git (and NTFS, HFS+) would read it: any
/// case, trailing dots or spaces, or the NTFS short name `GITMOD~N`.
pub fn is_gitmodules_name(name: &str) -> bool {
    let lower = name.trim_end_matches(['.', ' ']).to_ascii_lowercase();
    lower == ".gitmodules"
        || lower
            .strip_prefix("gitmod~")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Why git would refuse `content` as a `.gitmodules`, or `None` when it would not.
pub fn gitmodules_problem(content: &[u8]) -> Option<String> {
    if content.len() > GITMODULES_MAX_BYTES {
        return Some(format!(
            ".gitmodules is larger than {GITMODULES_MAX_BYTES} bytes"
        ));
    }
    let Ok(text) = std::str::from_utf8(content) else {
        return Some(".gitmodules is not UTF-8 text".to_owned());
    };
    // The submodule name of the current `[submodule "name"]` section, if any.
    let mut submodule: Option<&str> = None;
    let mut in_section = false;
    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            let Some(header) = header.strip_suffix(']') else {
                return Some(format!(".gitmodules line {line_no}: unterminated section"));
            };
            in_section = true;
            submodule = None;
            let header = header.trim();
            if let Some(rest) = header.strip_prefix("submodule") {
                let rest = rest.trim();
                let Some(name) = rest.strip_prefix('"').and_then(|r| r.strip_suffix('"')) else {
                    return Some(format!(
                        ".gitmodules line {line_no}: a submodule section needs a quoted name"
                    ));
                };
                if let Some(why) = name_problem(name) {
                    return Some(format!(".gitmodules line {line_no}: {why}"));
                }
                submodule = Some(name);
            }
            continue;
        }
        if !in_section {
            return Some(format!(
                ".gitmodules line {line_no}: a setting outside any section"
            ));
        }
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim(), unquote(v.trim())),
            None => (line, ""),
        };
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Some(format!(".gitmodules line {line_no}: invalid key {key:?}"));
        }
        if submodule.is_none() {
            continue;
        }
        let problem = match key.to_ascii_lowercase().as_str() {
            "url" if url_looks_like_option(value) => Some("a url that looks like an option"),
            "path" if value.starts_with('-') => Some("a path that looks like an option"),
            "update" if value.starts_with('!') => Some("an update command"),
            _ => None,
        };
        if let Some(why) = problem {
            return Some(format!(
                ".gitmodules line {line_no}: submodules may not have {why}"
            ));
        }
    }
    None
}

fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

/// git refuses submodule names that would climb out of `.git/modules/` or start at a root.
fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("an empty submodule name");
    }
    if name.starts_with('/') || name.starts_with('\\') {
        return Some("a submodule name may not start with a slash");
    }
    if name.split(['/', '\\']).any(|part| part == "..") {
        return Some("a submodule name may not contain '..'");
    }
    None
}

/// `-x`, or a URL whose host or path starts with `-` right after the scheme (`ssh://-oProxy…`).
fn url_looks_like_option(url: &str) -> bool {
    if url.starts_with('-') {
        return true;
    }
    match url.split_once("://") {
        Some((_, rest)) => rest.starts_with('-'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_filesystems_read_them() {
        for name in [
            ".gitmodules",
            ".GITMODULES",
            ".gitmodules.",
            ".gitmodules ",
            "GITMOD~1",
        ] {
            assert!(is_gitmodules_name(name), "{name}");
        }
        for name in ["gitmodules", ".gitmodules2", "GITMOD~", "a.gitmodules"] {
            assert!(!is_gitmodules_name(name), "{name}");
        }
    }

    #[test]
    fn usual_gitmodules_pass() {
        let ok = "[submodule \"vendor/lib\"]\n\tpath = vendor/lib\n\turl = https://example.com/lib.git\n\
                  # a comment\n[core]\n\tbare\n";
        assert_eq!(gitmodules_problem(ok.as_bytes()), None);
        assert_eq!(gitmodules_problem(b""), None);
    }

    #[test]
    fn what_git_refuses_is_refused() {
        for bad in [
            "[submodule \"x\"]\n\turl = --upload-pack=touch${IFS}/tmp/pwned\n",
            "[submodule \"x\"]\n\turl = \"-u./payload\"\n",
            "[submodule \"x\"]\n\turl = ssh://-oProxyCommand=x/y\n",
            "[submodule \"x\"]\n\tpath = -x\n",
            "[submodule \"x\"]\n\tupdate = !rm -rf /\n",
            "[submodule \"../../hooks\"]\n\turl = https://e.com/x\n",
            "[submodule \"/abs\"]\n\turl = https://e.com/x\n",
            "url = https://e.com/x\n",
            "[submodule \"x\"\n",
            "version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 3\n",
        ] {
            assert!(gitmodules_problem(bad.as_bytes()).is_some(), "{bad}");
        }
        assert!(gitmodules_problem(&[0xff, 0xfe]).is_some());
        assert!(gitmodules_problem(&vec![b'#'; GITMODULES_MAX_BYTES + 1]).is_some());
    }
}
