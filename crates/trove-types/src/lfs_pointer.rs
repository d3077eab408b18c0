//! The Git LFS pointer file (`version https://git-lfs.github.com/spec/v1`).

use crate::Sha256Hex;

/// Pointer files are tiny; anything longer is ordinary content.
pub const LFS_POINTER_MAX_LEN: usize = 1024;

const VERSION_LINE: &str = "version https://git-lfs.github.com/spec/v1";

/// What an LFS pointer says: the content's SHA-256 and size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LfsPointer {
    pub oid: Sha256Hex,
    pub size: u64,
}

impl LfsPointer {
    /// The canonical pointer text, as git-lfs writes it.
    pub fn to_text(&self) -> String {
        format!(
            "{VERSION_LINE}\noid sha256:{}\nsize {}\n",
            self.oid, self.size
        )
    }

    /// Parses a blob's bytes as a pointer; `None` when they are not one.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        if bytes.len() > LFS_POINTER_MAX_LEN {
            return None;
        }
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.lines();
        if lines.next()? != VERSION_LINE {
            return None;
        }
        let mut oid = None;
        let mut size = None;
        for line in lines {
            if let Some(rest) = line.strip_prefix("oid sha256:") {
                oid = Some(Sha256Hex::parse(rest).ok()?);
            } else if let Some(rest) = line.strip_prefix("size ") {
                size = Some(rest.parse::<u64>().ok()?);
            }
        }
        Some(Self {
            oid: oid?,
            size: size?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let p = LfsPointer {
            oid: Sha256Hex::parse(&"ab".repeat(32)).expect("hex"),
            size: 42,
        };
        assert_eq!(LfsPointer::parse(p.to_text().as_bytes()), Some(p));
    }

    #[test]
    fn accepts_extension_lines_written_by_git_lfs() {
        let text = format!(
            "{VERSION_LINE}\next-0-foo sha256:{}\noid sha256:{}\nsize 7\n",
            "0".repeat(64),
            "1".repeat(64)
        );
        assert_eq!(LfsPointer::parse(text.as_bytes()).map(|p| p.size), Some(7));
    }

    #[test]
    fn ordinary_text_is_not_a_pointer() {
        assert_eq!(LfsPointer::parse(b"hello"), None);
        assert_eq!(
            LfsPointer::parse(format!("{VERSION_LINE}\nsize 1\n").as_bytes()),
            None
        );
        assert_eq!(
            LfsPointer::parse(format!("{VERSION_LINE}\noid sha256:zz\nsize 1\n").as_bytes()),
            None
        );
    }
}
