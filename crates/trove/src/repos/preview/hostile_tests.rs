//! Hostile Parquet files, written byte by byte (Thrift's compact protocol by hand), so that
//! each declares exactly the lie under test: a dictionary of two billion values, a page
//! inflating past its size, 2^40 uncompressed bytes, a schema 10,000 levels deep, 5,000
//! columns. Each is a note (or, for width, a preview of the first columns), decided before
//! the `parquet` crate allocates what the file declares. A well-formed file written the same
//! way previews, so the builder is known to speak real Parquet.

use super::parquet::{self as pq, MAX_DECODED_BYTES, RangeRead};
use super::{Budget, MAX_COLUMNS, MAX_PREVIEW_BYTES, Table, Unavailable};
use crate::error::ApiResult;
use bytes::Bytes;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// A Thrift compact-protocol writer.
struct W {
    out: Vec<u8>,
    last: Vec<i16>,
}

const I32: u8 = 5;
const I64: u8 = 6;
const BINARY: u8 = 8;
const STRUCT: u8 = 12;

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

impl W {
    fn new() -> Self {
        W {
            out: Vec::new(),
            last: vec![0],
        }
    }

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.out.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.out.push(v as u8);
    }

    fn field(&mut self, id: i16, ty: u8) {
        let last = self.last.last_mut().expect("inside a struct");
        let delta = id - *last;
        *last = id;
        if (1..=15).contains(&delta) {
            self.out.push(((delta as u8) << 4) | ty);
        } else {
            self.out.push(ty);
            self.varint(zigzag(i64::from(id)));
        }
    }

    fn i32(&mut self, id: i16, v: i32) -> &mut Self {
        self.field(id, I32);
        self.varint(zigzag(i64::from(v)));
        self
    }

    fn i64(&mut self, id: i16, v: i64) -> &mut Self {
        self.field(id, I64);
        self.varint(zigzag(v));
        self
    }

    fn binary(&mut self, id: i16, v: &[u8]) -> &mut Self {
        self.field(id, BINARY);
        self.varint(v.len() as u64);
        self.out.extend_from_slice(v);
        self
    }

    fn list(&mut self, id: i16, ty: u8, n: usize) -> &mut Self {
        self.field(id, 9);
        if n < 15 {
            self.out.push(((n as u8) << 4) | ty);
        } else {
            self.out.push(0xf0 | ty);
            self.varint(n as u64);
        }
        self
    }

    fn begin(&mut self, id: i16) -> &mut Self {
        self.field(id, STRUCT);
        self.last.push(0);
        self
    }

    /// A struct as a list element.
    fn element(&mut self) -> &mut Self {
        self.last.push(0);
        self
    }

    fn end(&mut self) -> &mut Self {
        self.out.push(0);
        self.last.pop();
        self
    }
}

const PAGE_DATA: i32 = 0;
const PAGE_DICTIONARY: i32 = 2;
const INT64: i32 = 2;
const UNCOMPRESSED: i32 = 0;
const SNAPPY: i32 = 1;
const GZIP: i32 = 2;

/// A page: its header (type, declared sizes, its own header) and payload.
fn page(kind: i32, uncompressed: i32, values: i32, encoding: i32, payload: &[u8]) -> Vec<u8> {
    let mut w = W::new();
    w.i32(1, kind)
        .i32(2, uncompressed)
        .i32(3, payload.len() as i32);
    if kind == PAGE_DICTIONARY {
        w.begin(7).i32(1, values).i32(2, encoding).end();
    } else {
        w.begin(5)
            .i32(1, values)
            .i32(2, encoding)
            .i32(3, 3)
            .i32(4, 3)
            .end();
    }
    w.end();
    w.out.extend_from_slice(payload);
    w.out
}

/// A plain page of required int64 values.
fn int64_page(values: &[i64]) -> Vec<u8> {
    let payload: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    page(
        PAGE_DATA,
        payload.len() as i32,
        values.len() as i32,
        0,
        &payload,
    )
}

/// One required int64 column's chunk and what its metadata declares.
struct Chunk {
    name: String,
    codec: i32,
    /// The pages, and how many bytes of them the dictionary page takes (0 without one).
    bytes: Vec<u8>,
    dictionary_len: usize,
    values: i64,
    uncompressed: i64,
}

impl Chunk {
    fn plain(name: &str, values: &[i64]) -> Chunk {
        let bytes = int64_page(values);
        Chunk {
            name: name.to_owned(),
            codec: UNCOMPRESSED,
            uncompressed: bytes.len() as i64,
            bytes,
            dictionary_len: 0,
            values: values.len() as i64,
        }
    }
}

/// The schema: a root with one required int64 leaf per chunk.
fn flat_schema(w: &mut W, chunks: &[Chunk]) {
    w.list(2, STRUCT, chunks.len() + 1);
    w.element()
        .binary(4, b"schema")
        .i32(5, chunks.len() as i32)
        .end();
    for c in chunks {
        w.element()
            .i32(1, INT64)
            .i32(3, 0)
            .binary(4, c.name.as_bytes())
            .end();
    }
}

/// A whole file: `PAR1`, the chunks, a footer with one row group, its length, `PAR1`.
fn file(chunks: &[Chunk], rows: i64, schema: impl FnOnce(&mut W)) -> Vec<u8> {
    let mut data = b"PAR1".to_vec();
    let mut offsets = Vec::new();
    for c in chunks {
        offsets.push(data.len() as i64);
        data.extend_from_slice(&c.bytes);
    }
    let mut w = W::new();
    w.i32(1, 1);
    schema(&mut w);
    w.i64(3, rows);
    w.list(4, STRUCT, 1).element();
    w.list(1, STRUCT, chunks.len());
    for (c, at) in chunks.iter().zip(&offsets) {
        w.element().i64(2, *at).begin(3);
        w.i32(1, INT64);
        w.list(2, I32, 1);
        w.varint(0);
        w.list(3, BINARY, 1);
        w.varint(c.name.len() as u64);
        w.out.extend_from_slice(c.name.as_bytes());
        w.i32(4, c.codec)
            .i64(5, c.values)
            .i64(6, c.uncompressed)
            .i64(7, c.bytes.len() as i64)
            .i64(9, at + c.dictionary_len as i64);
        if c.dictionary_len > 0 {
            w.i64(11, *at);
        }
        w.end().end();
    }
    let total: i64 = chunks.iter().map(|c| c.bytes.len() as i64).sum();
    w.i64(2, total).i64(3, rows).end();
    w.end();
    let footer = w.out;
    data.extend_from_slice(&footer);
    data.extend_from_slice(&(footer.len() as u32).to_le_bytes());
    data.extend_from_slice(b"PAR1");
    data
}

fn flat_file(chunks: &[Chunk], rows: i64) -> Vec<u8> {
    file(chunks, rows, |w| flat_schema(w, chunks))
}

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

type Out = Result<(Table, Option<String>), Unavailable>;

/// The preview of `data` as the page computes it (decoding off the async threads), and the
/// bytes read.
async fn preview(data: Vec<u8>) -> (Out, u64) {
    let mem = Mem {
        data,
        read: AtomicU64::new(0),
    };
    let mut budget = Budget::new(MAX_PREVIEW_BYTES);
    let fetched = pq::fetch(&mem, &mut budget).await.expect("no I/O error");
    let out = match fetched {
        Ok(f) => tokio::task::spawn_blocking(move || pq::decode(f))
            .await
            .expect("decoding does not panic"),
        Err(u) => Err(u),
    };
    (out, mem.read.load(Ordering::Relaxed))
}

fn refused(out: Out) -> String {
    match out {
        Ok((table, note)) => panic!("expected no preview, got {table:?} ({note:?})"),
        Err(Unavailable(why)) => why,
    }
}

#[tokio::test]
async fn a_hand_written_file_previews() {
    let chunks = [Chunk::plain("a", &[1, 2, 3]), Chunk::plain("b", &[7, 8, 9])];
    let (out, _) = preview(flat_file(&chunks, 3)).await;
    let (table, note) = out.expect("preview");
    assert_eq!(note, None);
    assert_eq!(table.columns.len(), 2);
    assert_eq!(table.columns[1].dtype, "int64");
    assert_eq!(
        table.rows,
        vec![vec!["1", "7"], vec!["2", "8"], vec!["3", "9"]]
    );
}

#[tokio::test]
async fn a_dictionary_declaring_two_billion_values_is_refused() {
    let dictionary = page(PAGE_DICTIONARY, 16, i32::MAX, 0, &[0; 16]);
    // RLE_DICTIONARY indices: bit width 1, then a run of 3 zeros.
    let data = page(PAGE_DATA, 3, 3, 8, &[1, 6, 0]);
    let mut bytes = dictionary.clone();
    bytes.extend_from_slice(&data);
    let chunk = Chunk {
        name: "d".to_owned(),
        codec: UNCOMPRESSED,
        uncompressed: bytes.len() as i64,
        dictionary_len: dictionary.len(),
        bytes,
        values: 3,
    };
    let (out, _) = preview(flat_file(&[chunk], 3)).await;
    let why = refused(out);
    assert!(
        why.contains("dictionary page declares 2147483647 values"),
        "{why}"
    );
}

#[tokio::test]
async fn a_page_declaring_two_gib_uncompressed_is_refused_before_decompressing() {
    let bytes = page(PAGE_DATA, i32::MAX, 3, 0, &[0; 24]);
    let chunk = Chunk {
        name: "big".to_owned(),
        codec: SNAPPY,
        uncompressed: bytes.len() as i64,
        bytes,
        dictionary_len: 0,
        values: 3,
    };
    let (out, _) = preview(flat_file(&[chunk], 3)).await;
    let why = refused(out);
    assert!(
        why.contains("first pages declare more than the 64.0 MiB a preview decodes"),
        "{why}"
    );
    assert_eq!(MAX_DECODED_BYTES, 64 << 20);
}

#[tokio::test]
async fn a_gzip_page_inflating_past_its_declared_size_is_refused() {
    // 256 MiB of zeros in a page that declares 24 bytes.
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..256 {
        e.write_all(&zeros).expect("gzip");
    }
    let bomb = e.finish().expect("gzip");
    let bytes = page(PAGE_DATA, 24, 3, 0, &bomb);
    let chunk = Chunk {
        name: "bomb".to_owned(),
        codec: GZIP,
        uncompressed: 24,
        bytes,
        dictionary_len: 0,
        values: 3,
    };
    let started = std::time::Instant::now();
    let (out, _) = preview(flat_file(&[chunk], 3)).await;
    let why = refused(out);
    assert!(
        why.contains("gzip page inflates past the 24 B it declares"),
        "{why}"
    );
    assert!(started.elapsed().as_secs() < 5, "{:?}", started.elapsed());

    // The same column gzip-compressed honestly previews.
    let payload: Vec<u8> = [4i64, 5, 6].iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(&payload).expect("gzip");
    let bytes = page(PAGE_DATA, 24, 3, 0, &e.finish().expect("gzip"));
    let chunk = Chunk {
        name: "honest".to_owned(),
        codec: GZIP,
        uncompressed: 24,
        bytes,
        dictionary_len: 0,
        values: 3,
    };
    let (out, _) = preview(flat_file(&[chunk], 3)).await;
    assert_eq!(out.expect("preview").0.rows[2], vec!["6"]);
}

#[tokio::test]
async fn metadata_claiming_a_tebibyte_uncompressed_is_refused() {
    let mut chunk = Chunk::plain("a", &[1, 2, 3]);
    chunk.uncompressed = 1 << 40;
    let (out, read) = preview(flat_file(&[chunk], 3)).await;
    let why = refused(out);
    assert!(
        why.contains("declares 1024.0 GiB uncompressed for column a"),
        "{why}"
    );
    let footer_and_tail = read;
    assert!(
        footer_and_tail < 1024,
        "no column chunk was read ({read} bytes)"
    );
    let mut chunk = Chunk::plain("a", &[1, 2, 3]);
    chunk.values = -1;
    let why = refused(preview(flat_file(&[chunk], 3)).await.0);
    assert!(why.contains("negative size"), "{why}");
}

#[tokio::test]
async fn a_schema_ten_thousand_levels_deep_is_refused_before_it_is_built() {
    let chunks = [Chunk::plain("leaf", &[1])];
    let depth = 10_000;
    let data = file(&chunks, 1, |w| {
        w.list(2, STRUCT, depth + 2);
        w.element().binary(4, b"schema").i32(5, 1).end();
        for i in 0..depth {
            w.element()
                .i32(3, 1)
                .binary(4, format!("g{i}").as_bytes())
                .i32(5, 1)
                .end();
        }
        w.element().i32(1, INT64).i32(3, 1).binary(4, b"leaf").end();
    });
    let why = refused(preview(data).await.0);
    assert!(why.contains("nests more than 32 levels deep"), "{why}");

    // Child counts the elements cannot satisfy, and a negative one.
    for children in [1_000_000, -5] {
        let data = file(&chunks, 1, |w| {
            w.list(2, STRUCT, 2);
            w.element().binary(4, b"schema").i32(5, children).end();
            w.element().i32(1, INT64).i32(3, 0).binary(4, b"leaf").end();
        });
        let why = refused(preview(data).await.0);
        assert!(why.contains("child"), "{children}: {why}");
    }
}

#[tokio::test]
async fn a_file_of_five_thousand_columns_shows_its_first_ones() {
    let chunks: Vec<Chunk> = (0..5000)
        .map(|i| Chunk::plain(&format!("c{i}"), &[i, i + 1]))
        .collect();
    let data = flat_file(&chunks, 2);
    let len = data.len() as u64;
    let (out, read) = preview(data).await;
    let (table, note) = out.expect("preview");
    assert_eq!(table.columns.len(), MAX_COLUMNS);
    assert_eq!(
        table.columns[MAX_COLUMNS - 1].name,
        format!("c{}", MAX_COLUMNS - 1)
    );
    assert_eq!(table.rows[1][199], "200");
    assert_eq!(table.rows[0].len(), MAX_COLUMNS);
    assert_eq!(
        note.as_deref(),
        Some("the first 200 of its 5000 columns are shown")
    );
    // The footer, and the chunks of the columns shown: not the other 4,800.
    let chunk_bytes = chunks[0].bytes.len() as u64;
    assert!(
        read < len - 4000 * chunk_bytes,
        "read {read} of {len} bytes"
    );
}
