//! Parquet previews by ranged reads: the 8-byte tail, then the footer it points at, then a
//! bounded prefix of each column chunk of the first row group — enough for its first pages,
//! which hold the first rows. The bytes fetched are decoded by the `parquet` crate's record
//! reader over a file view that holds only those ranges, so a decoder that wants anything
//! else gets an error, never a read of the rest of the file.
//!
//! What the file declares is checked before the crate acts on it ([`declared`]): the
//! footer's length and schema shape before the footer is decoded, each column chunk's sizes,
//! and the header of every page held, whose declared sizes and counts are what the crate
//! allocates. The pages kept for decoding fit [`MAX_DECODED_BYTES`]; the view is cut after
//! the last of them, so no later page is ever decompressed. Wide files show their first
//! [`MAX_COLUMNS`] columns, and only those columns' chunks are read.

use super::declared::{self, PageKind};
use super::{
    Budget, Column, MAX_CELL_CHARS, MAX_COLUMNS, MAX_ROWS, Table, Unavailable, cell, human_bytes,
};
use crate::error::ApiResult;
use bytes::{Buf, Bytes};
use parquet::basic::{Compression, ConvertedType, LogicalType, TimeUnit, Type as PhysicalType};
use parquet::errors::ParquetError;
use parquet::file::FOOTER_SIZE;
use parquet::file::metadata::RowGroupMetaData;
use parquet::file::metadata::{FooterTail, ParquetMetaDataReader};
use parquet::file::properties::ReaderProperties;
use parquet::file::reader::{ChunkReader, Length, RowGroupReader};
use parquet::file::serialized_reader::SerializedRowGroupReader;
use parquet::record::reader::TreeBuilder;
use parquet::record::{Field, Row};
use parquet::schema::types::{SchemaDescriptor, Type};
use std::future::Future;
use std::sync::Arc;

/// The largest footer read (real footers are KiB; wide files with statistics a few MiB).
pub const MAX_FOOTER_BYTES: u64 = 8 << 20;
/// At most this much of one column chunk is read: its dictionary and first data pages.
const MAX_COLUMN_PREFIX: u64 = 4 << 20;
/// At least this much, however many columns share the budget.
const MIN_COLUMN_PREFIX: u64 = 64 << 10;
/// At most this many leaf columns are read (each needs its own read): wide files show
/// their first top-level columns up to this many leaves.
const MAX_LEAF_COLUMNS: usize = 256;
/// What decoding the pages kept may cost in memory, all columns together: their
/// decompressed bytes, their dictionaries' values, the values of nested columns.
pub const MAX_DECODED_BYTES: u64 = 64 << 20;
/// No codec a Parquet file may use expands data more than this (deflate's limit is 1032:1).
const MAX_EXPANSION: u64 = 1100;

/// Ranged reads of one file.
pub trait RangeRead: Sync {
    /// The file's length.
    fn size(&self) -> u64;
    /// `len` bytes from `start` (within the file); `Ok(None)` when the bytes are not held.
    fn read(&self, start: u64, len: u64) -> impl Future<Output = ApiResult<Option<Bytes>>> + Send;
}

/// What the ranged reads of a preview brought in, ready to decode.
pub struct Fetched {
    metadata: Arc<parquet::file::metadata::ParquetMetaData>,
    view: Option<SparseFile>,
    /// The top-level columns shown: the first ones, within the width budget.
    shown_fields: usize,
}

/// Reads the footer and the first row group's column chunk prefixes, within `budget`.
pub async fn fetch<R: RangeRead>(
    src: &R,
    budget: &mut Budget,
) -> ApiResult<Result<Fetched, Unavailable>> {
    let size = src.size();
    if size < (FOOTER_SIZE as u64) + 4 {
        return Ok(Err(Unavailable(
            "the file is too small to be Parquet".to_owned(),
        )));
    }
    let Some(tail) = read(src, budget, size - FOOTER_SIZE as u64, FOOTER_SIZE as u64).await? else {
        return Ok(Err(not_held()));
    };
    let tail: [u8; FOOTER_SIZE] = match tail.as_ref().try_into() {
        Ok(t) => t,
        Err(_) => return Ok(Err(not_held())),
    };
    let tail = match FooterTail::try_new(&tail) {
        Ok(t) => t,
        Err(_) => {
            return Ok(Err(Unavailable(
                "the file does not end like a Parquet file (no PAR1 footer)".to_owned(),
            )));
        }
    };
    if tail.is_encrypted_footer() {
        return Ok(Err(Unavailable("the file is encrypted".to_owned())));
    }
    let footer_len = tail.metadata_length() as u64;
    if footer_len > MAX_FOOTER_BYTES {
        return Ok(Err(Unavailable(format!(
            "its footer is {}, more than the {} a preview reads",
            super::human_bytes(footer_len),
            super::human_bytes(MAX_FOOTER_BYTES)
        ))));
    }
    let data_end = size - FOOTER_SIZE as u64;
    if footer_len > data_end {
        return Ok(Err(Unavailable(
            "its footer claims more bytes than the file has".to_owned(),
        )));
    }
    let footer_start = data_end - footer_len;
    let Some(footer) = read(src, budget, footer_start, footer_len).await? else {
        return Ok(Err(not_held()));
    };
    // The crate builds the schema recursively and sizes vectors by declared child counts:
    // its shape is checked on the raw bytes first.
    if let Err(u) = declared::check_schema(&footer) {
        return Ok(Err(u));
    }
    let metadata = match ParquetMetaDataReader::decode_metadata(&footer) {
        Ok(m) => Arc::new(m),
        Err(e) => return Ok(Err(corrupt(&e))),
    };
    let schema = metadata.file_metadata().schema_descr_ptr();
    let (shown_fields, leaves) = match projection(&schema) {
        Ok(p) => p,
        Err(u) => return Ok(Err(u)),
    };
    let Some(group) = metadata.row_groups().first() else {
        return Ok(Ok(Fetched {
            metadata,
            view: None,
            shown_fields,
        }));
    };
    if group.num_columns() != schema.num_columns() {
        return Ok(Err(Unavailable(
            "its first row group's columns do not match its schema".to_owned(),
        )));
    }
    if let Err(u) = check_chunks(group, leaves) {
        return Ok(Err(u));
    }
    let share =
        (budget.bytes_left() / leaves.max(1) as u64).clamp(MIN_COLUMN_PREFIX, MAX_COLUMN_PREFIX);
    let mut ranges = Vec::with_capacity(leaves);
    for column in group.columns().iter().take(leaves) {
        let (start, len) = column.byte_range();
        if start.checked_add(len).is_none_or(|end| end > footer_start) {
            return Ok(Err(Unavailable(
                "its footer places a column outside the file".to_owned(),
            )));
        }
        let want = len.min(share);
        if want > budget.bytes_left() {
            return Ok(Err(Unavailable(format!(
                "the first rows need more than the {} a preview reads",
                super::human_bytes(super::MAX_PREVIEW_BYTES)
            ))));
        }
        let Some(bytes) = read(src, budget, start, want).await? else {
            return Ok(Err(not_held()));
        };
        ranges.push((start, bytes));
    }
    Ok(Ok(Fetched {
        metadata,
        view: Some(SparseFile { size, ranges }),
        shown_fields,
    }))
}

/// How many top-level columns to show, and how many leaf columns (the first ones) they
/// span: at most [`MAX_COLUMNS`] columns and [`MAX_LEAF_COLUMNS`] leaves.
fn projection(schema: &SchemaDescriptor) -> Result<(usize, usize), Unavailable> {
    let fields = schema.root_schema().get_fields().len().min(MAX_COLUMNS);
    let mut per_field = vec![0usize; fields];
    for leaf in 0..schema.num_columns() {
        match per_field.get_mut(schema.get_column_root_idx(leaf)) {
            Some(n) => *n += 1,
            None => break,
        }
    }
    let (mut shown, mut leaves) = (0, 0);
    for n in per_field {
        if leaves + n > MAX_LEAF_COLUMNS {
            break;
        }
        shown += 1;
        leaves += n;
    }
    if shown == 0 && fields > 0 {
        return Err(Unavailable(format!(
            "its first column has more than the {MAX_LEAF_COLUMNS} nested fields a preview reads"
        )));
    }
    Ok((shown, leaves))
}

/// Checks the first `leaves` column chunks' declared sizes: none negative, and no more
/// uncompressed bytes than any codec could expand the stored ones to.
fn check_chunks(group: &RowGroupMetaData, leaves: usize) -> Result<(), Unavailable> {
    for column in group.columns().iter().take(leaves) {
        let (stored, whole) = (column.compressed_size(), column.uncompressed_size());
        if stored < 0 || whole < 0 || column.num_values() < 0 {
            return Err(Unavailable(format!(
                "its metadata declares a negative size for column {}",
                cell(&column.column_path().string())
            )));
        }
        let (stored, whole) = (stored as u64, whole as u64);
        if whole > stored.saturating_mul(MAX_EXPANSION).saturating_add(1 << 20) {
            return Err(Unavailable(format!(
                "its metadata declares {} uncompressed for column {} stored in {}, more than any codec expands",
                human_bytes(whole),
                cell(&column.column_path().string()),
                human_bytes(stored)
            )));
        }
    }
    Ok(())
}

async fn read<R: RangeRead>(
    src: &R,
    budget: &mut Budget,
    start: u64,
    len: u64,
) -> ApiResult<Option<Bytes>> {
    budget.spend(len);
    src.read(start, len).await
}

fn not_held() -> Unavailable {
    Unavailable("the file's bytes are not held on this hub".to_owned())
}

fn corrupt(e: &ParquetError) -> Unavailable {
    let mut text = e.to_string();
    text.truncate(text.floor_char_boundary(200));
    Unavailable(format!("the file's footer is not valid Parquet ({text})"))
}

/// Decodes the first rows of what [`fetch`] brought in (CPU work: run it off the async
/// threads). Rows stop early, with a note, where the bytes read end.
pub fn decode(fetched: Fetched) -> Result<(Table, Option<String>), Unavailable> {
    let schema = fetched.metadata.file_metadata().schema_descr_ptr();
    let fields = schema.root_schema().get_fields();
    let shown = &fields[..fetched.shown_fields.min(fields.len())];
    let width_note = (shown.len() < fields.len()).then(|| {
        format!(
            "the first {} of its {} columns are shown",
            shown.len(),
            fields.len()
        )
    });
    let columns: Vec<Column> = shown
        .iter()
        .map(|f| Column {
            name: cell(f.name()),
            dtype: type_name(f),
        })
        .collect();
    let (Some(view), Some(group)) = (fetched.view, fetched.metadata.row_groups().first()) else {
        return Ok((
            Table {
                columns,
                rows: Vec::new(),
            },
            join_notes(Some("the file has no row groups".to_owned()), width_note),
        ));
    };
    let view = within_decode_budget(view, group)?;
    // Without the fallback, an LZ4 page inflates to its declared size at most (the fallback
    // to LZ4 frames reads to the end, whatever the header says).
    let props = Arc::new(
        ReaderProperties::builder()
            .set_backward_compatible_lz4(false)
            .set_read_page_statistics(false)
            .build(),
    );
    let projected = Type::group_type_builder(schema.root_schema().name())
        .with_fields(shown.to_vec())
        .build()
        .map_err(|e| rows_error(&e))?;
    let projected = Arc::new(SchemaDescriptor::new(Arc::new(projected)));
    let reader = SerializedRowGroupReader::new(
        Arc::new(view),
        group,
        fetched.metadata.page_index_for_row_group(0),
        props,
    )
    .map_err(|e| rows_error(&e))?;
    let iter = TreeBuilder::new()
        .with_batch_size(MAX_ROWS)
        .as_iter(projected, &reader as &dyn RowGroupReader)
        .map_err(|e| rows_error(&e))?;
    let mut rows = Vec::new();
    let mut note = None;
    for row in iter.take(MAX_ROWS) {
        match row {
            Ok(row) => rows.push(row_cells(&row, columns.len())),
            Err(e) if rows.is_empty() => return Err(rows_error(&e)),
            Err(_) => {
                note = Some("rows shown up to the end of the bytes read".to_owned());
                break;
            }
        }
    }
    Ok((Table { columns, rows }, join_notes(note, width_note)))
}

fn join_notes(a: Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => Some(format!("{a}; {b}")),
        (a, b) => a.or(b),
    }
}

/// The view cut to the pages whose decoding fits [`MAX_DECODED_BYTES`]: every column's
/// leading dictionary and first data page (or no preview), then further data pages within
/// an equal share of what is left. Each page kept is checked on its own first.
fn within_decode_budget(
    view: SparseFile,
    group: &RowGroupMetaData,
) -> Result<SparseFile, Unavailable> {
    let mut walked = Vec::with_capacity(view.ranges.len());
    let mut required = 0u64;
    for (i, (_, held)) in view.ranges.iter().enumerate() {
        let column = group.column(i);
        let name = cell(&column.column_path().string());
        let nested = column.column_descr().max_rep_level() > 0;
        let pages = declared::pages(held, column.byte_range().1)
            .map_err(|u| Unavailable(format!("column {name}: {}", u.0)))?;
        let Some(first_data) = pages
            .iter()
            .position(|p| matches!(p.kind, PageKind::Data | PageKind::DataV2))
        else {
            return Err(Unavailable(format!(
                "the first page of column {name} is larger than the {} a preview reads of a column",
                human_bytes(held.len() as u64)
            )));
        };
        let mut need = 0u64;
        for page in &pages[..=first_data] {
            declared::check_page(page)
                .map_err(|u| Unavailable(format!("column {name}: {}", u.0)))?;
            need = need.saturating_add(declared::cost(page, nested));
        }
        required = required.saturating_add(need);
        if required > MAX_DECODED_BYTES {
            return Err(Unavailable(format!(
                "its first pages declare more than the {} a preview decodes (column {name}'s alone {})",
                human_bytes(MAX_DECODED_BYTES),
                human_bytes(need)
            )));
        }
        walked.push((pages, first_data, nested, column.compression()));
    }
    let share = (MAX_DECODED_BYTES - required) / walked.len().max(1) as u64;
    let mut ranges = Vec::with_capacity(view.ranges.len());
    for ((start, held), (pages, first_data, nested, codec)) in view.ranges.into_iter().zip(walked) {
        let mut keep = first_data + 1;
        let mut extra = 0u64;
        for page in &pages[keep..] {
            let cost = declared::cost(page, nested);
            if declared::check_page(page).is_err() || extra.saturating_add(cost) > share {
                break;
            }
            extra += cost;
            keep += 1;
        }
        if matches!(codec, Compression::GZIP(_)) {
            for page in &pages[..keep] {
                declared::check_gzip_page(page, &held)?;
            }
        }
        let end = pages[keep - 1].end() as usize;
        ranges.push((start, held.slice(..end)));
    }
    Ok(SparseFile {
        size: view.size,
        ranges,
    })
}

fn rows_error(e: &ParquetError) -> Unavailable {
    let mut text = e.to_string();
    text.truncate(text.floor_char_boundary(200));
    Unavailable(format!("its first rows could not be read ({text})"))
}

fn row_cells(row: &Row, width: usize) -> Vec<String> {
    row.get_column_iter()
        .take(width)
        .map(|(_, field)| field_cell(field))
        .collect()
}

/// A value in a cell: text as it is, nested values as truncated JSON, the rest as the
/// record API prints them.
fn field_cell(field: &Field) -> String {
    match field {
        Field::Null => String::new(),
        Field::Str(s) => cell(s),
        Field::Bytes(b) => {
            let data = b.data();
            let shown = &data[..data.len().min(MAX_CELL_CHARS / 2)];
            cell(&format!(
                "<{} bytes> {}{}",
                data.len(),
                hex::encode(shown),
                if shown.len() < data.len() { "…" } else { "" }
            ))
        }
        Field::Group(_) | Field::ListInternal(_) | Field::MapInternal(_) => {
            cell(&field.to_json_value().to_string())
        }
        other => cell(&other.to_string()),
    }
}

/// A column's type as the Hub's viewer names it (Arrow's names): `string`, `int64`,
/// `list<…>`, `struct<…>`…
pub fn type_name(t: &Type) -> String {
    let mut out = String::new();
    write_type(t, &mut out, 0);
    out
}

fn write_type(t: &Type, out: &mut String, depth: usize) {
    if out.len() > 120 || depth > 8 {
        out.push('…');
        return;
    }
    let info = t.get_basic_info();
    if t.is_group() {
        let fields = t.get_fields();
        match info.logical_type_ref() {
            Some(LogicalType::List) => {
                out.push_str("list<");
                // LIST → repeated group → element (the three-level layout).
                match fields.first() {
                    Some(inner) if inner.is_group() && inner.get_fields().len() == 1 => {
                        write_type(&inner.get_fields()[0], out, depth + 1)
                    }
                    Some(inner) => write_type(inner, out, depth + 1),
                    None => out.push('?'),
                }
                out.push('>');
            }
            Some(LogicalType::Map) => out.push_str("map"),
            _ if info.converted_type() == ConvertedType::LIST => out.push_str("list"),
            _ if info.converted_type() == ConvertedType::MAP => out.push_str("map"),
            _ => {
                out.push_str("struct<");
                for (i, f) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(f.name());
                    out.push_str(": ");
                    write_type(f, out, depth + 1);
                    if out.len() > 120 {
                        break;
                    }
                }
                out.push('>');
            }
        }
        return;
    }
    let name = match info.logical_type_ref() {
        Some(LogicalType::String | LogicalType::Enum | LogicalType::Json) => "string".to_owned(),
        Some(LogicalType::Integer(i)) => {
            format!("{}int{}", if i.is_signed { "" } else { "u" }, i.bit_width)
        }
        Some(LogicalType::Decimal(d)) => format!("decimal({}, {})", d.precision, d.scale),
        Some(LogicalType::Date) => "date32".to_owned(),
        Some(LogicalType::Timestamp(ts)) => format!("timestamp[{}]", unit(&ts.unit)),
        Some(LogicalType::Time(ts)) => format!("time[{}]", unit(&ts.unit)),
        Some(LogicalType::Float16) => "float16".to_owned(),
        Some(LogicalType::Uuid) => "uuid".to_owned(),
        _ if info.converted_type() == ConvertedType::UTF8 => "string".to_owned(),
        _ => match t.get_physical_type() {
            PhysicalType::BOOLEAN => "bool",
            PhysicalType::INT32 => "int32",
            PhysicalType::INT64 => "int64",
            PhysicalType::INT96 => "timestamp[ns]",
            PhysicalType::FLOAT => "float",
            PhysicalType::DOUBLE => "double",
            PhysicalType::BYTE_ARRAY => "binary",
            PhysicalType::FIXED_LEN_BYTE_ARRAY => "fixed_size_binary",
        }
        .to_owned(),
    };
    out.push_str(&name);
}

fn unit(u: &TimeUnit) -> &'static str {
    match u {
        TimeUnit::MILLIS => "ms",
        TimeUnit::MICROS => "us",
        TimeUnit::NANOS => "ns",
    }
}

/// A file of which only some ranges are held: reads inside them succeed, others fail.
struct SparseFile {
    size: u64,
    ranges: Vec<(u64, Bytes)>,
}

impl SparseFile {
    fn slice(&self, start: u64, len: Option<u64>) -> parquet::errors::Result<Bytes> {
        for (at, bytes) in &self.ranges {
            let end = at + bytes.len() as u64;
            // Column chunks sit end to end: a read from `start` belongs to the range that
            // holds its first byte, not to the one that ends there.
            let inside = match len {
                Some(len) => start >= *at && start.saturating_add(len) <= end,
                None => start >= *at && start < end,
            };
            if inside {
                let from = (start - at) as usize;
                let to = len.map_or(bytes.len(), |len| from + len as usize);
                return Ok(bytes.slice(from..to));
            }
        }
        Err(ParquetError::General(format!(
            "byte {start} is past the bytes read for the preview"
        )))
    }
}

impl Length for SparseFile {
    fn len(&self) -> u64 {
        self.size
    }
}

impl ChunkReader for SparseFile {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Ok(self.slice(start, None)?.reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.slice(start, Some(length as u64))
    }
}
