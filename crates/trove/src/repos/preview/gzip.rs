//! Gzip-compressed text files (`train.csv.gz`, `data.jsonl.gz`…): the first bytes once
//! inflated, by streaming ranged reads through an inflater whose output stops at the
//! preview's prefix. A file that inflates a thousandfold (a gzip bomb) costs the preview
//! one small read and the prefix it shows, never its declared or real size.

use super::Unavailable;
use super::parquet::RangeRead;
use crate::error::ApiResult;
use std::io::Write;

/// The first compressed read; each next one doubles, up to [`MAX_READ_STEP`].
const FIRST_READ: u64 = 256 << 10;
const MAX_READ_STEP: u64 = 4 << 20;
/// Compressed bytes handed to the inflater at a time, so that it stops soon after the
/// prefix is full (deflate expands at most about 1032:1).
const FEED: usize = 16 << 10;

/// The first bytes of a gzip file once inflated.
#[derive(Debug)]
pub struct Inflated {
    /// At most the `limit` asked for.
    pub text: Vec<u8>,
    /// The text is the whole file.
    pub whole: bool,
}

/// Inflates `src` up to `limit` output bytes, reading at most `max_read` compressed bytes.
pub async fn inflate_prefix<R: RangeRead>(
    src: &R,
    limit: usize,
    max_read: u64,
) -> ApiResult<Result<Inflated, Unavailable>> {
    let size = src.size();
    let mut inflater = flate2::write::MultiGzDecoder::new(Capped {
        out: Vec::new(),
        limit,
        full: false,
    });
    let mut at = 0u64;
    let mut step = FIRST_READ;
    while at < size && at < max_read {
        let len = step.min(size - at).min(max_read - at);
        let Some(chunk) = src.read(at, len).await? else {
            return Ok(Err(Unavailable(
                "the file's bytes are not held on this hub".to_owned(),
            )));
        };
        if chunk.is_empty() {
            break;
        }
        at += chunk.len() as u64;
        step = (step * 2).min(MAX_READ_STEP);
        for piece in chunk.chunks(FEED) {
            if let Err(e) = inflater.write_all(piece) {
                return Ok(stopped(take(&mut inflater), &e));
            }
        }
    }
    if at < size {
        // The read budget ran out before the prefix filled: show what inflated.
        let out = take(&mut inflater);
        return Ok(ok_or_empty(out, false));
    }
    match inflater.try_finish() {
        Ok(()) => {
            let out = take(&mut inflater);
            Ok(Ok(Inflated {
                text: out.out,
                whole: true,
            }))
        }
        Err(e) => Ok(stopped(take(&mut inflater), &e)),
    }
}

/// The inflater stopped on an error: the prefix filled (the usual end), or the stream is
/// not gzip (a note, unless some text inflated before it).
fn stopped(out: Capped, e: &std::io::Error) -> Result<Inflated, Unavailable> {
    if out.full {
        return ok_or_empty(out, false);
    }
    if out.out.is_empty() {
        let mut why = e.to_string();
        why.truncate(why.floor_char_boundary(120));
        return Err(Unavailable(format!("the file is not valid gzip ({why})")));
    }
    ok_or_empty(out, false)
}

fn ok_or_empty(out: Capped, whole: bool) -> Result<Inflated, Unavailable> {
    if out.out.is_empty() {
        return Err(Unavailable(
            "nothing inflated from the bytes a preview reads".to_owned(),
        ));
    }
    Ok(Inflated {
        text: out.out,
        whole,
    })
}

/// A sink that keeps the first `limit` bytes written, then refuses more.
struct Capped {
    out: Vec<u8>,
    limit: usize,
    full: bool,
}

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = self.limit - self.out.len();
        if room == 0 {
            self.full = true;
            return Err(std::io::Error::other("the preview's prefix is full"));
        }
        let n = buf.len().min(room);
        self.out.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The sink's bytes, whatever state the stream was left in.
fn take(inflater: &mut flate2::write::MultiGzDecoder<Capped>) -> Capped {
    let sink = inflater.get_mut();
    Capped {
        out: std::mem::take(&mut sink.out),
        limit: sink.limit,
        full: sink.full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::sync::atomic::{AtomicU64, Ordering};

    struct Mem {
        data: Vec<u8>,
        read: AtomicU64,
    }

    impl RangeRead for Mem {
        fn size(&self) -> u64 {
            self.data.len() as u64
        }

        async fn read(&self, start: u64, len: u64) -> ApiResult<Option<Bytes>> {
            self.read.fetch_add(len, Ordering::Relaxed);
            let end = start.saturating_add(len).min(self.size()) as usize;
            Ok(self
                .data
                .get(start as usize..end)
                .map(Bytes::copy_from_slice))
        }
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).expect("gzip");
        e.finish().expect("gzip")
    }

    async fn inflate(data: Vec<u8>, limit: usize) -> (Result<Inflated, Unavailable>, u64) {
        let mem = Mem {
            data,
            read: AtomicU64::new(0),
        };
        let out = inflate_prefix(&mem, limit, 32 << 20)
            .await
            .expect("no I/O error");
        (out, mem.read.load(Ordering::Relaxed))
    }

    #[tokio::test]
    async fn a_small_file_inflates_whole() {
        let (out, _) = inflate(gz(b"a,b\n1,2\n"), 1 << 20).await;
        let out = out.expect("inflated");
        assert!(out.whole);
        assert_eq!(out.text, b"a,b\n1,2\n");
    }

    #[tokio::test]
    async fn a_gzip_bomb_stops_at_the_prefix_after_one_small_read() {
        // 1 GiB of zeros, streamed into the encoder so the test itself stays small.
        let mut e = GzEncoder::new(Vec::new(), Compression::best());
        let zeros = vec![b'0'; 1 << 20];
        for _ in 0..1024 {
            e.write_all(&zeros).expect("gzip");
        }
        let bomb = e.finish().expect("gzip");
        assert!(bomb.len() < 2 << 20, "{} bytes", bomb.len());
        let started = std::time::Instant::now();
        let (out, read) = inflate(bomb, 1 << 20).await;
        let out = out.expect("inflated");
        assert!(!out.whole);
        assert_eq!(out.text.len(), 1 << 20);
        assert!(read <= FIRST_READ, "read {read} compressed bytes");
        assert!(started.elapsed().as_secs() < 2, "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn concatenated_members_and_a_cut_stream() {
        let mut two = gz(b"x\n1\n");
        two.extend(gz(b"2\n"));
        let (out, _) = inflate(two, 1 << 20).await;
        assert_eq!(out.expect("members").text, b"x\n1\n2\n");
        // A stream cut short shows what inflated, as a prefix.
        let text: Vec<u8> = (0..20_000)
            .flat_map(|i| format!("{i}\n").into_bytes())
            .collect();
        let mut cut = gz(&text);
        cut.truncate(cut.len() / 2);
        let (out, _) = inflate(cut, 1 << 20).await;
        let out = out.expect("prefix");
        assert!(!out.whole && !out.text.is_empty() && text.starts_with(&out.text));
    }

    #[tokio::test]
    async fn bytes_that_are_not_gzip_are_a_note() {
        let (out, _) = inflate(b"id,name\n1,x\n".to_vec(), 1 << 20).await;
        let why = out.expect_err("not gzip").0;
        assert!(why.contains("not valid gzip"), "{why}");
    }
}
