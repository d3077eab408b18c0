//! Parquet previews over in-memory files: the bytes read stay bounded, hostile footers are
//! notes.

use super::parquet::{self as pq, RangeRead};
use super::{Budget, MAX_PREVIEW_BYTES, MAX_ROWS, Table, Unavailable};
use crate::error::ApiResult;
use ::parquet::basic::Compression;
use ::parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use ::parquet::file::properties::WriterProperties;
use ::parquet::file::writer::SerializedFileWriter;
use ::parquet::schema::parser::parse_message_type;
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A file in memory that counts the bytes read from it.
struct Mem {
    data: Vec<u8>,
    read: AtomicU64,
}

impl Mem {
    fn new(data: Vec<u8>) -> Self {
        Mem {
            data,
            read: AtomicU64::new(0),
        }
    }
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

/// A Parquet file of `groups` row groups of `rows` rows: `id` (int64), `name` (string, every
/// third one null), snappy-compressed.
fn parquet_file(groups: usize, rows: usize) -> Vec<u8> {
    let schema = Arc::new(
        parse_message_type("message m { required int64 id; optional binary name (UTF8); }")
            .expect("schema"),
    );
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build(),
    );
    let mut writer = SerializedFileWriter::new(Vec::new(), schema, props).expect("writer");
    for g in 0..groups {
        let ids: Vec<i64> = (0..rows).map(|i| (g * rows + i) as i64).collect();
        let defs: Vec<i16> = (0..rows).map(|i| i16::from(i % 3 != 2)).collect();
        let names: Vec<ByteArray> = ids
            .iter()
            .zip(&defs)
            .filter(|(_, d)| **d == 1)
            .map(|(i, _)| ByteArray::from(format!("name {i} {}", noise(*i)).as_str()))
            .collect();
        let mut group = writer.next_row_group().expect("row group");
        let mut col = group.next_column().expect("id").expect("id column");
        col.typed::<Int64Type>()
            .write_batch(&ids, None, None)
            .expect("ids");
        col.close().expect("close id");
        let mut col = group.next_column().expect("name").expect("name column");
        col.typed::<ByteArrayType>()
            .write_batch(&names, Some(&defs), None)
            .expect("names");
        col.close().expect("close name");
        group.close().expect("close group");
    }
    writer.into_inner().expect("file")
}

/// 40 hex digits that compress poorly, so chunks are as large as real data's.
fn noise(seed: i64) -> String {
    let mut x = (seed as u64).wrapping_mul(6_364_136_223_846_793_005) ^ 0x9e37_79b9_7f4a_7c15;
    (0..5)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            format!("{:08x}", x >> 32)
        })
        .collect()
}

async fn preview_of(data: Vec<u8>) -> (Result<(Table, Option<String>), Unavailable>, u64) {
    let mem = Mem::new(data);
    let mut budget = Budget::new(MAX_PREVIEW_BYTES);
    let fetched = pq::fetch(&mem, &mut budget).await.expect("no I/O error");
    let out = fetched.and_then(pq::decode);
    (out, mem.read.load(Ordering::Relaxed))
}

#[tokio::test]
async fn parquet_first_rows_come_from_the_first_row_group_only() {
    let data = parquet_file(4, 20_000);
    let len = data.len() as u64;
    let (out, read) = preview_of(data).await;
    let (table, note) = out.expect("preview");
    assert_eq!(note, None);
    let types: Vec<(&str, &str)> = table
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.dtype.as_str()))
        .collect();
    assert_eq!(types, vec![("id", "int64"), ("name", "string")]);
    assert_eq!(table.rows.len(), MAX_ROWS);
    assert_eq!(table.rows[0][0], "0");
    assert_eq!(table.rows[0][1], format!("name 0 {}", noise(0)));
    assert_eq!(table.rows[2][1], "", "a null shows as an empty cell");
    assert!(
        read < len / 3,
        "read {read} of {len} bytes: only the footer and the first row group's pages"
    );
}

#[tokio::test]
async fn a_file_with_no_rows_shows_its_columns() {
    let (out, _) = preview_of(parquet_file(0, 0)).await;
    let (table, note) = out.expect("preview");
    assert_eq!(table.columns.len(), 2);
    assert!(table.rows.is_empty());
    assert!(note.is_some());
}

fn unavailable(out: Result<(Table, Option<String>), Unavailable>) -> String {
    match out {
        Ok(_) => panic!("expected no preview"),
        Err(Unavailable(why)) => why,
    }
}

#[tokio::test]
async fn a_truncated_file_has_no_parquet_footer() {
    let mut data = parquet_file(1, 100);
    data.truncate(data.len() - 3);
    let (out, _) = preview_of(data).await;
    assert!(unavailable(out).contains("no PAR1 footer"));
    let (out, _) = preview_of(b"PAR1".to_vec()).await;
    assert!(unavailable(out).contains("too small"));
}

#[tokio::test]
async fn a_corrupt_footer_is_a_note() {
    let mut data = parquet_file(1, 100);
    let n = data.len();
    let footer_len = u32::from_le_bytes([data[n - 8], data[n - 7], data[n - 6], data[n - 5]]);
    for (i, b) in data[n - 8 - footer_len as usize..n - 8]
        .iter_mut()
        .enumerate()
    {
        *b = (i as u8).wrapping_mul(37) ^ 0xa5;
    }
    let (out, _) = preview_of(data).await;
    assert!(unavailable(out).contains("not valid Parquet"));
}

#[tokio::test]
async fn a_footer_claiming_huge_sizes_is_refused_before_reading_it() {
    let mut data = parquet_file(1, 100);
    let n = data.len();
    data[n - 8..n - 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let (out, read) = preview_of(data.clone()).await;
    assert!(unavailable(out).contains("more than the 8.0 MiB"));
    assert_eq!(read, 8, "only the tail was read");
    data[n - 8..n - 4].copy_from_slice(&(n as u32).to_le_bytes());
    let (out, _) = preview_of(data).await;
    assert!(unavailable(out).contains("more bytes than the file has"));
}

#[tokio::test]
async fn column_chunks_past_the_budget_are_cut_to_their_first_pages() {
    // One row group of 300k rows: its name chunk is larger than a column's share (4 MiB).
    let data = parquet_file(1, 300_000);
    let len = data.len() as u64;
    assert!(len > 9 << 20, "the file is {len} bytes");
    let (out, read) = preview_of(data).await;
    let (table, _) = out.expect("preview");
    assert_eq!(table.rows.len(), MAX_ROWS);
    assert_eq!(table.rows[99][0], "99");
    assert!(read <= (8 << 20) + 64 * 1024, "read {read} of {len}");
    assert!(read < len * 3 / 4, "read {read} of {len}");
}
