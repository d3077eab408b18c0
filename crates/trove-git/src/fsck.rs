//! The checks git's `fsck` makes of pushed objects (what `receive.fsckObjects` runs inside
//! `index-pack --strict`), made here as a recognizer of the plainly good: each function
//! either vouches for an object — git's checks would certainly pass it, with every finding
//! Trove raises to an error (`smart_http::FSCK_ERRORS`) — or says why it cannot. It never
//! refuses: what it cannot vouch for is judged by git's own checks afterwards
//! ([`crate::PushView::new_objects`]), so the only rule here is to be narrower than git.
//! That is why some harmless objects are doubted (a tag named with a character outside a
//! plain set, a tree entry named `x~1`): they cost a run of git's checks, not a refusal.
//!
//! What git checks, and what is vouched for here:
//! - a tree (`fsck_tree`): entries parse; modes exactly `100644`, `100755`, `120000`,
//!   `40000`, `160000` (no zero padding, no `100664`); names not empty, without `/`, not `.`
//!   or `..`, at most 4096 bytes; no null id; sorted in git's order (a folder sorts as its
//!   name followed by `/`) without duplicates; no name that NTFS or HFS+ would read as
//!   `.git`, `.gitmodules` or `.gitattributes`, nor a symlinked `.gitignore` or `.mailmap`
//!   — here any name with `~`, `:` or `\`, any spelling of those five names but the plain
//!   `.gitattributes` and `.gitignore` files, and any non-ASCII name whose ASCII letters
//!   spell one of them, is doubted; a plain `.gitattributes` file's blob is named for
//!   [`gitattributes`];
//! - a commit (`fsck_commit`): `tree`, `parent`s, one `author`, `committer`, each ident
//!   `Name <email> seconds ±hhmm`; headers terminated; no NUL byte anywhere;
//! - a tag (`fsck_tag_standalone`): `object`, `type`, a `tag` name valid as a ref, `tagger`,
//!   then the message; no NUL byte (here: anywhere);
//! - `index-pack --strict`'s walk: every object a tree, commit or tag names exists, in the
//!   push or in the repository, with the type it is named as (the caller checks the
//!   [`Link`]s).

use git2::{ObjectType, Oid};

/// An object another names, which must exist with this type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    pub id: Oid,
    pub kind: ObjectType,
}

/// Why an object could not be vouched for here: git's own checks must judge it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Doubt(pub &'static str);

/// Longest tree entry name git accepts (`fsck.largePathname`'s default limit).
const MAX_NAME_BYTES: usize = 4096;
/// Largest `.gitattributes` read here (git's limit is 100 MB; real ones are a few KiB).
pub const MAX_GITATTRIBUTES_BYTES: u64 = 1 << 20;
/// git refuses a `.gitattributes` with a line this long or longer.
const GITATTRIBUTES_MAX_LINE: usize = 2048;
/// Bytes of a raw object id.
const RAW_ID: usize = 20;
/// Hex digits of an object id.
const HEX_ID: usize = 40;

/// Checks a raw tree (`<mode> <name>\0<20-byte id>`…); pushes what it names to `links` and
/// the blobs of its plain `.gitattributes` files to `attributes`.
pub fn tree(raw: &[u8], links: &mut Vec<Link>, attributes: &mut Vec<Oid>) -> Result<(), Doubt> {
    let mut rest = raw;
    // The names of the entries so far (for the duplicate check) and whether the last one
    // is a folder.
    let mut names: Vec<&[u8]> = Vec::new();
    let mut previous_is_dir = false;
    while !rest.is_empty() {
        let (TreeEntry { mode, name, id }, next) =
            split_entry(rest).ok_or(Doubt("a tree entry that does not parse"))?;
        rest = next;
        let kind = match mode {
            b"100644" | b"100755" | b"120000" => Some(ObjectType::Blob),
            b"40000" => Some(ObjectType::Tree),
            b"160000" => None,
            _ => return Err(Doubt("a tree entry with an unusual mode")),
        };
        if id.iter().all(|&b| b == 0) {
            return Err(Doubt("a tree entry naming the null id"));
        }
        check_name(name)?;
        let is_dir = kind == Some(ObjectType::Tree);
        if let Some(&before) = names.last() {
            in_order(before, previous_is_dir, name, is_dir)?;
        }
        if is_dir && has_file_named(&names, name) {
            return Err(Doubt("a tree with a file and a folder of one name"));
        }
        let is_link = mode == b"120000";
        match special(name) {
            Special::No => {}
            Special::Gitattributes if kind == Some(ObjectType::Blob) && !is_link => {
                attributes.push(oid(id)?);
            }
            Special::Gitignore if !is_link => {}
            _ => return Err(Doubt("a tree entry git's checks look at by name")),
        }
        if let Some(kind) = kind {
            links.push(Link { id: oid(id)?, kind });
        }
        names.push(name);
        previous_is_dir = is_dir;
    }
    Ok(())
}

/// Whether an entry before a folder named `dir` is a file of that name (git's
/// `duplicateEntries`). In git's order a folder sorts as its name followed by `/`, so such a
/// file need not come just before it (`a`, `a.b`, `a/`), but every entry between them
/// starts with the name: the search goes back only through those. (A folder of the name
/// just before would be out of order, found by [`in_order`].)
fn has_file_named(names: &[&[u8]], dir: &[u8]) -> bool {
    names
        .iter()
        .rev()
        .take_while(|before| before.starts_with(dir))
        .any(|before| *before == dir)
}

/// One entry of a raw tree, as it is written: `<mode> <name>\0<20-byte id>`.
pub(crate) struct TreeEntry<'a> {
    pub mode: &'a [u8],
    pub name: &'a [u8],
    pub id: &'a [u8],
}

/// The entry `raw` starts with and what follows it; `None` when `raw` does not start with a
/// whole entry. The one reading of raw tree entries for a push's examination (the object
/// checks here, the path rule in `push.rs`).
pub(crate) fn split_entry(raw: &[u8]) -> Option<(TreeEntry<'_>, &[u8])> {
    let space = raw.iter().position(|&b| b == b' ')?;
    let (mode, after) = (&raw[..space], &raw[space + 1..]);
    let nul = after.iter().position(|&b| b == 0)?;
    let id = after.get(nul + 1..nul + 1 + RAW_ID)?;
    let entry = TreeEntry {
        mode,
        name: &after[..nul],
        id,
    };
    Some((entry, &after[nul + 1 + RAW_ID..]))
}

fn oid(raw: &[u8]) -> Result<Oid, Doubt> {
    Oid::from_bytes(raw).map_err(|_| Doubt("an object id that does not read"))
}

/// A name git's tree checks pass, apart from the names it looks at ([`special`]).
fn check_name(name: &[u8]) -> Result<(), Doubt> {
    if name.is_empty() || name == b"." || name == b".." {
        return Err(Doubt("an empty, `.` or `..` tree entry name"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(Doubt("a very long tree entry name"));
    }
    if name
        .iter()
        .any(|&b| matches!(b, b'/' | b'\\' | b':' | b'~'))
    {
        return Err(Doubt("a tree entry name with `/`, `\\`, `:` or `~`"));
    }
    Ok(())
}

/// Whether `name` (after `before`) keeps the tree in git's order: names compared byte by
/// byte, a folder's as if followed by `/`; equal names are git's `duplicateEntries`. (Names
/// hold no `/`, [`check_name`].)
fn in_order(before: &[u8], before_is_dir: bool, name: &[u8], is_dir: bool) -> Result<(), Doubt> {
    let n = before.len().min(name.len());
    let after_common = |n: &[u8], dir: bool, at: usize| match n.get(at) {
        Some(&b) => Some(b),
        None => dir.then_some(b'/'),
    };
    let sorted = match before[..n].cmp(&name[..n]) {
        std::cmp::Ordering::Less => true,
        std::cmp::Ordering::Greater => false,
        std::cmp::Ordering::Equal => match (
            after_common(before, before_is_dir, n),
            after_common(name, is_dir, n),
        ) {
            (Some(a), Some(b)) => a < b,
            (None, Some(_)) => true,
            (_, None) => false,
        },
    };
    if sorted {
        Ok(())
    } else {
        Err(Doubt("a tree out of git's order or with a duplicate"))
    }
}

/// How a tree entry name stands to the names git's checks look at.
#[derive(Debug, PartialEq, Eq)]
enum Special {
    No,
    /// Exactly `.gitattributes`.
    Gitattributes,
    /// Exactly `.gitignore`.
    Gitignore,
    /// Another spelling of one of them, or of `.git`, `.gitmodules`, `.mailmap`.
    Other,
}

/// The names git's tree checks look at, lower case, without the spellings NTFS and HFS+
/// ignore (trailing dots and spaces; code points HFS+ skips, all outside ASCII).
const LOOKED_AT: &[&[u8]] = &[
    b".git",
    b".gitmodules",
    b".gitattributes",
    b".gitignore",
    b".mailmap",
];

fn special(name: &[u8]) -> Special {
    match name {
        b".gitattributes" => return Special::Gitattributes,
        b".gitignore" => return Special::Gitignore,
        _ => {}
    }
    // Every one of them starts with `.` once the code points HFS+ skips are gone, and those
    // are all outside ASCII: a plain ASCII name that starts otherwise is none of them.
    if name.first() != Some(&b'.') && name.is_ascii() {
        return Special::No;
    }
    let mut letters: Vec<u8> = name
        .iter()
        .filter(|b| b.is_ascii())
        .map(u8::to_ascii_lowercase)
        .collect();
    while letters.last().is_some_and(|&b| b == b'.' || b == b' ') {
        letters.pop();
    }
    if LOOKED_AT.contains(&letters.as_slice()) {
        Special::Other
    } else {
        Special::No
    }
}

/// Checks a raw commit; pushes its tree and parents to `links`.
pub fn commit(raw: &[u8], links: &mut Vec<Link>) -> Result<(), Doubt> {
    if raw.contains(&0) {
        return Err(Doubt("a commit with a NUL byte"));
    }
    headers_end(raw)?;
    let mut lines = Lines(raw);
    let tree = lines
        .next_with(b"tree ")
        .ok_or(Doubt("a commit without its tree line first"))?;
    links.push(Link {
        id: hex_id(tree)?,
        kind: ObjectType::Tree,
    });
    let mut author = None;
    while let Some(line) = lines.next_line() {
        if let Some(parent) = line.strip_prefix(b"parent ") {
            links.push(Link {
                id: hex_id(parent)?,
                kind: ObjectType::Commit,
            });
            continue;
        }
        author = line.strip_prefix(b"author ");
        break;
    }
    ident(author.ok_or(Doubt("a commit without its author line"))?)?;
    let committer = lines.next_with(b"committer ").ok_or(Doubt(
        "a commit without its committer line after the author",
    ))?;
    ident(committer)
}

/// Checks a raw tag; pushes the object it names to `links`.
pub fn tag(raw: &[u8], links: &mut Vec<Link>) -> Result<(), Doubt> {
    if raw.contains(&0) {
        return Err(Doubt("a tag with a NUL byte"));
    }
    headers_end(raw)?;
    let mut lines = Lines(raw);
    let object = lines
        .next_with(b"object ")
        .ok_or(Doubt("a tag without its object line"))?;
    let kind = match lines.next_with(b"type ") {
        Some(b"commit") => ObjectType::Commit,
        Some(b"tree") => ObjectType::Tree,
        Some(b"blob") => ObjectType::Blob,
        Some(b"tag") => ObjectType::Tag,
        _ => return Err(Doubt("a tag without a plain type line")),
    };
    links.push(Link {
        id: hex_id(object)?,
        kind,
    });
    let name = lines
        .next_with(b"tag ")
        .ok_or(Doubt("a tag without its name line"))?;
    tag_name(name)?;
    ident(
        lines
            .next_with(b"tagger ")
            .ok_or(Doubt("a tag without its tagger line"))?,
    )?;
    // The message follows a blank line, or nothing does.
    if !lines.0.is_empty() && !lines.0.starts_with(b"\n") {
        return Err(Doubt("a tag with headers after its tagger"));
    }
    Ok(())
}

/// Checks the content of a `.gitattributes` blob of `size` bytes (`content`: all of it).
pub fn gitattributes(content: &[u8]) -> Result<(), Doubt> {
    if content.len() as u64 > MAX_GITATTRIBUTES_BYTES {
        return Err(Doubt("a large .gitattributes"));
    }
    if content
        .split(|&b| b == b'\n')
        .any(|line| line.len() >= GITATTRIBUTES_MAX_LINE)
    {
        return Err(Doubt("a .gitattributes with a very long line"));
    }
    Ok(())
}

/// The headers of a commit or tag end as git requires: with a blank line, or with the
/// object's last byte a newline.
fn headers_end(raw: &[u8]) -> Result<(), Doubt> {
    if raw.windows(2).any(|w| w == b"\n\n") || raw.last() == Some(&b'\n') {
        Ok(())
    } else {
        Err(Doubt("headers without their end"))
    }
}

/// The lines of an object's headers, each without its newline; a line without one ends the
/// iteration.
struct Lines<'a>(&'a [u8]);

impl<'a> Lines<'a> {
    fn next_line(&mut self) -> Option<&'a [u8]> {
        let end = self.0.iter().position(|&b| b == b'\n')?;
        let line = &self.0[..end];
        self.0 = &self.0[end + 1..];
        Some(line)
    }

    /// The next line's value after `prefix`, if it has that prefix.
    fn next_with(&mut self, prefix: &[u8]) -> Option<&'a [u8]> {
        self.next_line()?.strip_prefix(prefix)
    }
}

/// Forty lower-case hexadecimal digits, exactly (git also reads upper case; doubted here).
fn hex_id(text: &[u8]) -> Result<Oid, Doubt> {
    let plain = text.len() == HEX_ID && text.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !plain {
        return Err(Doubt("an object id that is not 40 lower-case hex digits"));
    }
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| Oid::from_str(t).ok())
        .ok_or(Doubt("an object id that does not read"))
}

/// `Name <email> seconds ±hhmm` as git writes it: a name without `<`, `>` or a newline,
/// ending in a space; an email without them; one space; seconds without leading zeros (at
/// most 12 digits, far from an overflow); one space; a sign and four digits.
fn ident(line: &[u8]) -> Result<(), Doubt> {
    let bad = Doubt("an identity not written as git writes one");
    let lt = line.iter().position(|&b| b == b'<').ok_or(bad.clone())?;
    let (name, rest) = (&line[..lt], &line[lt + 1..]);
    if name.last() != Some(&b' ') || name.contains(&b'>') {
        return Err(bad);
    }
    let gt = rest.iter().position(|&b| b == b'>').ok_or(bad.clone())?;
    let (email, rest) = (&rest[..gt], &rest[gt + 1..]);
    if email.contains(&b'<') {
        return Err(bad);
    }
    let rest = rest.strip_prefix(b" ").ok_or(bad.clone())?;
    let space = rest.iter().position(|&b| b == b' ').ok_or(bad.clone())?;
    let (seconds, zone) = (&rest[..space], &rest[space + 1..]);
    let digits = seconds.iter().all(u8::is_ascii_digit);
    let unpadded = seconds == b"0" || seconds.first().is_some_and(|&d| d != b'0');
    if seconds.is_empty() || seconds.len() > 12 || !digits || !unpadded {
        return Err(bad);
    }
    let zone_ok = zone.len() == 5
        && matches!(zone[0], b'+' | b'-')
        && zone[1..].iter().all(u8::is_ascii_digit);
    if !zone_ok {
        return Err(bad);
    }
    Ok(())
}

/// A tag name git would take as `refs/tags/<name>`, within a plain set: ASCII letters,
/// digits, `.`, `_`, `-`, `+` and single `/` between parts, no part starting with `.`,
/// nothing ending with `.` or `.lock`, no `..`.
fn tag_name(name: &[u8]) -> Result<(), Doubt> {
    let plain = !name.is_empty()
        && name.len() <= 255
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+' | b'/'))
        && name.split(|&b| b == b'/').all(|part| {
            !part.is_empty()
                && !part.starts_with(b".")
                && !part.ends_with(b".")
                && !part.ends_with(b".lock")
        })
        && !name.windows(2).any(|w| w == b"..");
    if plain {
        Ok(())
    } else {
        Err(Doubt("a tag name outside the plain set"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: [u8; 20] = [0xab; 20];
    const HEX: &str = "abababababababababababababababababababab";

    fn raw_tree(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut raw = Vec::new();
        for (mode, name) in entries {
            raw.extend_from_slice(mode.as_bytes());
            raw.push(b' ');
            raw.extend_from_slice(name);
            raw.push(0);
            raw.extend_from_slice(&ID);
        }
        raw
    }

    fn tree_says(entries: &[(&str, &[u8])]) -> Result<(), Doubt> {
        tree(&raw_tree(entries), &mut Vec::new(), &mut Vec::new())
    }

    #[test]
    fn a_plain_tree_is_vouched_for_with_its_links() {
        let raw = raw_tree(&[
            ("100644", b".gitattributes"),
            ("100644", b"README.md"),
            ("40000", b"a"),
            ("100644", b"a.b"),
            ("100755", b"run.sh"),
            ("120000", b"link"),
            ("160000", b"sub"),
        ]);
        // A folder sorts as its name and `/` (0x2f), so after `a.b` (`.` is 0x2e).
        let mut links = Vec::new();
        let mut attributes = Vec::new();
        let result = tree(&raw, &mut links, &mut attributes);
        assert_eq!(
            result,
            Err(Doubt("a tree out of git's order or with a duplicate"))
        );
        let raw = raw_tree(&[
            ("100644", b".gitattributes"),
            ("100644", b"README.md"),
            ("100644", b"a.b"),
            ("40000", b"a"),
            ("120000", b"link"),
            ("100755", b"run.sh"),
            ("160000", b"sub"),
        ]);
        links.clear();
        attributes.clear();
        assert_eq!(tree(&raw, &mut links, &mut attributes), Ok(()));
        let id = Oid::from_bytes(&ID).expect("id");
        assert_eq!(attributes, vec![id]);
        let kinds: Vec<ObjectType> = links.iter().map(|l| l.kind).collect();
        use ObjectType::{Blob, Tree};
        assert_eq!(
            kinds,
            vec![Blob, Blob, Blob, Tree, Blob, Blob],
            "no link for the gitlink"
        );
    }

    #[test]
    fn trees_git_might_refuse_are_doubted() {
        let cases: &[&[(&str, &[u8])]] = &[
            &[("100664", b"a")],
            &[("0100644", b"a")],
            &[("040000", b"a")],
            &[("100644", b"")],
            &[("100644", b".")],
            &[("40000", b"..")],
            &[("100644", b"b"), ("100644", b"a")],
            &[("100644", b"a"), ("100644", b"a")],
            &[("100644", b"a"), ("40000", b"a")],
            &[("100644", b"a"), ("100644", b"a.b"), ("40000", b"a")],
            &[("100644", b"a"), ("100644", b"a-"), ("40000", b"a")],
            &[("40000", b".git")],
            &[("40000", b".GIT")],
            &[("40000", b".git. . ")],
            &[("40000", b"git~1")],
            &[("40000", b".git\xe2\x80\x8c")],
            &[("100644", b".gitmodules")],
            &[("100644", b".GitModules")],
            &[("100644", b"gitmod~1")],
            &[("100644", b".gitattributes ")],
            &[("120000", b".gitattributes")],
            &[("120000", b".gitignore")],
            &[("120000", b".mailmap")],
            &[("100644", b".mailmap")],
            &[("100644", b"a\\b")],
            &[("100644", b"a:b")],
        ];
        for case in cases {
            assert!(tree_says(case).is_err(), "{case:?}");
        }
        let long = vec![b'x'; MAX_NAME_BYTES + 1];
        assert!(tree_says(&[("100644", &long)]).is_err());
        let mut null = raw_tree(&[("100644", b"a")]);
        let at = null.len() - RAW_ID;
        null[at..].fill(0);
        assert!(tree(&null, &mut Vec::new(), &mut Vec::new()).is_err());
        // Every cut inside the second entry leaves a tree that does not parse.
        let raw = raw_tree(&[("100644", b"a"), ("100644", b"b")]);
        let entry = raw.len() / 2;
        for cut in 1..entry {
            assert!(tree(&raw[..raw.len() - cut], &mut Vec::new(), &mut Vec::new()).is_err());
        }
    }

    #[test]
    fn names_near_the_looked_at_ones_pass() {
        for name in [
            &b".gitkeep"[..],
            b".github",
            b"gitmodules",
            b"mailmap",
            b".gitignored",
            "éte".as_bytes(),
        ] {
            assert_eq!(
                tree_says(&[("100644", name)]),
                Ok(()),
                "{}",
                String::from_utf8_lossy(name)
            );
        }
        assert_eq!(tree_says(&[("40000", b".github")]), Ok(()));
    }

    fn commit_text(author: &str) -> String {
        format!(
            "tree {HEX}\nparent {HEX}\nparent {HEX}\nauthor {author}\ncommitter {author}\n\nmessage\n"
        )
    }

    #[test]
    fn a_plain_commit_is_vouched_for_with_its_links() {
        let mut links = Vec::new();
        let plain = commit_text("A U Thor <a@example.com> 1700000000 +0100");
        assert_eq!(commit(plain.as_bytes(), &mut links), Ok(()));
        let kinds: Vec<ObjectType> = links.iter().map(|l| l.kind).collect();
        use ObjectType::{Commit, Tree};
        assert_eq!(kinds, vec![Tree, Commit, Commit]);
        let signed = format!(
            "tree {HEX}\nauthor A <a@b> 0 -0000\ncommitter A <a@b> 0 -0000\ngpgsig -----BEGIN\n \
             line\n -----END\n\nmessage"
        );
        assert_eq!(commit(signed.as_bytes(), &mut links), Ok(()));
        let no_message = format!("tree {HEX}\nauthor  <> 1 +0000\ncommitter A <a@b> 1 +0000\n");
        assert_eq!(commit(no_message.as_bytes(), &mut links), Ok(()));
    }

    #[test]
    fn commits_git_might_refuse_are_doubted() {
        let good = "A <a@b> 1700000000 +0000";
        let idents = [
            "<a@b> 1 +0000",
            "A<a@b> 1 +0000",
            "A <a@b 1 +0000",
            "A <a<b> 1 +0000",
            "A> <a@b> 1 +0000",
            "A <a@b>  1 +0000",
            "A <a@b> 01 +0000",
            "A <a@b> 1 +000",
            "A <a@b> 1 0000",
            "A <a@b> 1 +0000 ",
            "A <a@b> 99999999999999999999 +0000",
            "A <a@b> x +0000",
            "A <a@b>",
        ];
        for bad in idents {
            assert!(
                commit(commit_text(bad).as_bytes(), &mut Vec::new()).is_err(),
                "{bad}"
            );
        }
        let cases = [
            format!("author {good}\ncommitter {good}\n\nno tree\n"),
            format!(
                "tree {}\nauthor {good}\ncommitter {good}\n\n",
                HEX.to_uppercase()
            ),
            format!("tree {HEX}x\nauthor {good}\ncommitter {good}\n\n"),
            format!("tree {HEX}\ncommitter {good}\n\nno author\n"),
            format!("tree {HEX}\nauthor {good}\nauthor {good}\ncommitter {good}\n\n"),
            format!("tree {HEX}\nauthor {good}\n\nno committer\n"),
            format!("tree {HEX}\nauthor {good}\ncommitter {good}\n\nNUL \0 in the message\n"),
            format!("tree {HEX}\nauthor {good}\ncommitter {good}"),
            format!("tree {HEX}\nparent {HEX}\nparent 0\nauthor {good}\ncommitter {good}\n\n"),
        ];
        for case in &cases {
            assert!(
                commit(case.as_bytes(), &mut Vec::new()).is_err(),
                "{case:?}"
            );
        }
    }

    #[test]
    fn tags_are_vouched_for_only_when_plain() {
        let tagger = "tagger A <a@b> 1700000000 +0000";
        let mut links = Vec::new();
        let plain = format!("object {HEX}\ntype commit\ntag v1.0/rc-1_b+x\n{tagger}\n\nmessage\n");
        assert_eq!(tag(plain.as_bytes(), &mut links), Ok(()));
        assert_eq!(links[0].kind, ObjectType::Commit);
        let bare = format!("object {HEX}\ntype tree\ntag t\n{tagger}\n");
        assert_eq!(tag(bare.as_bytes(), &mut links), Ok(()));
        let cases = [
            format!("object {HEX}\ntype commit\ntag v1\n\nno tagger\n"),
            format!("object {HEX}\ntype commit\ntag v1\n{tagger}\nextra header\n\n"),
            format!("object {HEX}\ntype comit\ntag v1\n{tagger}\n\n"),
            format!("object {HEX}\ntype commit\ntag v1..2\n{tagger}\n\n"),
            format!("object {HEX}\ntype commit\ntag v1.lock\n{tagger}\n\n"),
            format!("object {HEX}\ntype commit\ntag .v1\n{tagger}\n\n"),
            format!("object {HEX}\ntype commit\ntag a b\n{tagger}\n\n"),
            format!("object {HEX}\ntype commit\ntag \n{tagger}\n\n"),
            format!("type commit\nobject {HEX}\ntag v1\n{tagger}\n\n"),
            format!("object {HEX}\ntype commit\ntag v1\n{tagger}\n\nNUL \0\n"),
        ];
        for case in &cases {
            assert!(tag(case.as_bytes(), &mut Vec::new()).is_err(), "{case:?}");
        }
    }

    #[test]
    fn gitattributes_are_vouched_for_up_to_git_limits() {
        assert_eq!(
            gitattributes(b"*.bin filter=lfs diff=lfs merge=lfs -text\n"),
            Ok(())
        );
        assert_eq!(
            gitattributes(&vec![b'x'; GITATTRIBUTES_MAX_LINE - 1]),
            Ok(())
        );
        assert!(gitattributes(&vec![b'x'; GITATTRIBUTES_MAX_LINE]).is_err());
        let mut many = b"a\n".repeat(1000);
        many.extend(vec![b'y'; 3000]);
        assert!(gitattributes(&many).is_err());
        assert!(gitattributes(&vec![b'\n'; MAX_GITATTRIBUTES_BYTES as usize + 1]).is_err());
    }

    /// git's own verdict on one object: written as is, packed alone and read by
    /// `index-pack` with its object checks (not the walk of links: the objects named here
    /// do not exist), with Trove's findings raised to errors.
    struct GitJudge {
        dir: tempfile::TempDir,
        /// A `.gitattributes`-like blob the repository holds: every tree entry names it.
        blob: [u8; RAW_ID],
        checks: String,
    }

    impl GitJudge {
        fn new() -> GitJudge {
            let dir = tempfile::tempdir().expect("temp dir");
            let out = std::process::Command::new("git")
                .args(["init", "-q", "--bare", "repo"])
                .current_dir(dir.path())
                .output()
                .expect("git init");
            assert!(out.status.success());
            let mut judge = GitJudge {
                dir,
                blob: [0; RAW_ID],
                checks: format!(
                    "--fsck-objects={}",
                    crate::smart_http::FSCK_ERRORS
                        .iter()
                        .map(|id| format!("{}=error", id.to_ascii_lowercase()))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            };
            let id = judge.write("blob", b"*.bin filter=lfs diff=lfs merge=lfs -text\n");
            judge
                .blob
                .copy_from_slice(Oid::from_str(&id).expect("id").as_bytes());
            judge
        }

        fn git(&self, args: &[&str], input: &[u8]) -> std::process::Output {
            use std::io::Write;
            let mut child = std::process::Command::new("git")
                .args(args)
                .env("GIT_DIR", self.dir.path().join("repo"))
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("git");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input)
                .expect("input");
            child.wait_with_output().expect("git ran")
        }

        fn write(&self, kind: &str, raw: &[u8]) -> String {
            let out = self.git(
                &["hash-object", "--literally", "-w", "-t", kind, "--stdin"],
                raw,
            );
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        }

        /// Whether git's checks pass the object `raw` of type `kind`.
        fn passes(&self, kind: &str, raw: &[u8]) -> bool {
            let id = self.write(kind, raw);
            let pack = self.git(
                &["pack-objects", "--stdout", "-q"],
                format!("{id}\n").as_bytes(),
            );
            assert!(
                pack.status.success(),
                "{}",
                String::from_utf8_lossy(&pack.stderr)
            );
            let target = self.dir.path().join("check.pack");
            let target = target.to_str().expect("utf-8 path");
            let indexed = self.git(
                &["index-pack", &self.checks, "--stdin", target],
                &pack.stdout,
            );
            for ext in ["pack", "idx", "rev"] {
                let _ = std::fs::remove_file(self.dir.path().join(format!("check.{ext}")));
            }
            indexed.status.success()
        }
    }

    /// A small generator of test cases (xorshift), the same every run.
    struct Cases(u64);

    impl Cases {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn one_in(&mut self, n: u64) -> bool {
            self.next().is_multiple_of(n)
        }
        fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
            &from[(self.next() % from.len() as u64) as usize]
        }
    }

    /// Whatever is vouched for here, git passes: trees, commits and tags made from pieces
    /// near git's rules, each judged by both.
    #[test]
    fn what_is_vouched_for_git_passes() {
        let judge = GitJudge::new();
        let mut cases = Cases(0x9e37_79b9_7f4a_7c15);
        let mut vouched: std::collections::HashMap<String, usize> = Default::default();
        let mut check = |kind: &str, raw: &[u8], ours: bool| {
            if ours {
                *vouched.entry(kind.to_owned()).or_default() += 1;
                assert!(
                    judge.passes(kind, raw),
                    "vouched for a {kind} git refuses: {:?}",
                    String::from_utf8_lossy(raw)
                );
            }
        };
        let plain_names: &[&[u8]] = &[
            b"a",
            b"a.b",
            b"a-",
            b"b",
            b"A",
            b"README.md",
            b".gitattributes",
            b".gitignore",
            b".gitkeep",
            b".github",
            b"\xc3\xa9",
            b"a b",
            b"ab",
            b"z",
        ];
        let odd_names: &[&[u8]] = &[
            b".git",
            b".GIT",
            b".git.",
            b".Git ",
            b"git~1",
            b"GIT~2",
            b".gitmodules",
            b"gitmod~1",
            b".GITATTRIBUTES",
            b".gitattributes.",
            b".mailmap",
            b".gitignore ",
            b".git\xe2\x80\x8c",
            b"\xef\xbb\xbf.gitattributes",
            b"x\\.git",
            b"x:y",
            b"",
            b".",
            b"..",
        ];
        let plain_modes: &[&str] = &["100644", "100755", "120000", "40000", "160000"];
        let odd_modes: &[&str] = &["100664", "0100644", "040000", "644"];
        for _ in 0..300 {
            let count = 1 + cases.next() % 4;
            let mut raw = Vec::new();
            for _ in 0..count {
                let odd = cases.one_in(8);
                let mode = if odd {
                    cases.pick(odd_modes)
                } else {
                    cases.pick(plain_modes)
                };
                raw.extend_from_slice(mode.as_bytes());
                raw.push(b' ');
                let odd = cases.one_in(8);
                let names = if odd { odd_names } else { plain_names };
                let name: &[u8] = cases.pick::<&[u8]>(names);
                raw.extend_from_slice(name);
                raw.push(0);
                if cases.one_in(32) {
                    raw.extend_from_slice(&[0; RAW_ID]);
                } else {
                    raw.extend_from_slice(&judge.blob);
                }
            }
            let ours = tree(&raw, &mut Vec::new(), &mut Vec::new()).is_ok();
            check("tree", &raw, ours);
        }
        let idents: &[&str] = &[
            "A U Thor <a@example.com> 1700000000 +0100",
            "A <a@b> 0 -0000",
            " <> 1 +0000",
            "<a@b> 1 +0000",
            "A<a@b> 1 +0000",
            "A <a@b>  1 +0000",
            "A <a@b> 01 +0000",
            "A <a@b> 1 +000",
            "A <a@b> 1 0000",
            "A <a@b> 18446744073709551617 +0000",
            "A <a<b> 1 +0000",
            "A <a@b>\t1 +0000",
        ];
        let hex = "abababababababababababababababababababab";
        for _ in 0..200 {
            let mut lines: Vec<String> = Vec::new();
            let tree_id = if cases.one_in(10) {
                hex.to_uppercase()
            } else {
                hex.to_owned()
            };
            lines.push(format!("tree {tree_id}"));
            for _ in 0..cases.next() % 3 {
                // Not the tree's id: git reads one id as one type.
                lines.push(format!("parent {}", "cd".repeat(RAW_ID)));
            }
            let ident = |cases: &mut Cases| {
                if cases.one_in(3) {
                    *cases.pick(idents)
                } else {
                    *cases.pick(&idents[..2])
                }
            };
            lines.push(format!("author {}", ident(&mut cases)));
            if cases.one_in(10) {
                lines.push(format!("author {}", ident(&mut cases)));
            }
            lines.push(format!("committer {}", ident(&mut cases)));
            if cases.one_in(4) {
                lines.push("encoding ISO-8859-1".to_owned());
            }
            if cases.one_in(10) {
                let (a, b) = (
                    cases.next() as usize % lines.len(),
                    cases.next() as usize % lines.len(),
                );
                lines.swap(a, b);
            }
            let mut raw = lines.join("\n").into_bytes();
            match cases.next() % 6 {
                0 => {}
                1 => raw.extend_from_slice(b"\n"),
                2 => raw.extend_from_slice(b"\n\nmessage \0 with NUL\n"),
                _ => raw.extend_from_slice(b"\n\nmessage\n"),
            }
            let ours = commit(&raw, &mut Vec::new()).is_ok();
            check("commit", &raw, ours);
        }
        let tag_names: &[&str] = &[
            "v1.0", "x/y", "rc-1_b+x", "v2", "v1..0", "v1.lock", ".v", "a b", "x//y", "", "v1^",
        ];
        let types: &[&str] = &["commit", "tree", "blob", "tag", "commit", "comit"];
        for _ in 0..200 {
            let mut lines = vec![
                format!("object {hex}"),
                format!("type {}", cases.pick(types)),
                format!("tag {}", cases.pick(tag_names)),
            ];
            if !cases.one_in(6) {
                let ident = if cases.one_in(3) {
                    cases.pick(idents)
                } else {
                    cases.pick(&idents[..2])
                };
                lines.push(format!("tagger {ident}"));
            }
            if cases.one_in(6) {
                lines.push("extra header".to_owned());
            }
            let mut raw = lines.join("\n").into_bytes();
            raw.extend_from_slice(if cases.one_in(3) {
                b"\n"
            } else {
                b"\n\nmessage\n"
            });
            let ours = tag(&raw, &mut Vec::new()).is_ok();
            check("tag", &raw, ours);
        }
        // Not a test that cannot fail for want of cases: many of each kind are vouched for.
        for kind in ["tree", "commit", "tag"] {
            assert!(vouched.get(kind).is_some_and(|&n| n >= 20), "{vouched:?}");
        }
    }
}
