//! Parquet previews by ranged reads: the 8-byte tail, then the footer it points at, then a
//! bounded prefix of each column chunk of the first row group — enough for its first pages,
//! which hold the first rows. The bytes fetched are decoded by the `parquet` crate's record
//! reader over a file view that holds only those ranges, so a decoder that wants anything
//! else gets an error, never a read of the rest of the file.

use super::{Budget, Column, MAX_CELL_CHARS, MAX_COLUMNS, MAX_ROWS, Table, Unavailable, cell};
use crate::error::ApiResult;
use bytes::{Buf, Bytes};
use parquet::basic::{ConvertedType, LogicalType, TimeUnit, Type as PhysicalType};
use parquet::errors::ParquetError;
use parquet::file::FOOTER_SIZE;
use parquet::file::metadata::{FooterTail, ParquetMetaDataReader};
use parquet::file::properties::ReaderProperties;
use parquet::file::reader::{ChunkReader, Length, RowGroupReader};
use parquet::file::serialized_reader::SerializedRowGroupReader;
use parquet::record::reader::TreeBuilder;
use parquet::record::{Field, Row};
use parquet::schema::types::Type;
use std::future::Future;
use std::sync::Arc;

/// The largest footer read (real footers are KiB; wide files with statistics a few MiB).
pub const MAX_FOOTER_BYTES: u64 = 8 << 20;
/// At most this much of one column chunk is read: its dictionary and first data pages.
const MAX_COLUMN_PREFIX: u64 = 4 << 20;
/// At least this much, however many columns share the budget.
const MIN_COLUMN_PREFIX: u64 = 64 << 10;
/// Files with more leaf columns than this are not previewed (each needs its own read).
const MAX_LEAF_COLUMNS: usize = 1024;

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
    let metadata = match ParquetMetaDataReader::decode_metadata(&footer) {
        Ok(m) => Arc::new(m),
        Err(e) => return Ok(Err(corrupt(&e))),
    };
    let Some(group) = metadata.row_groups().first() else {
        return Ok(Ok(Fetched {
            metadata,
            view: None,
        }));
    };
    if group.num_columns() > MAX_LEAF_COLUMNS {
        return Ok(Err(Unavailable(format!(
            "the file has {} columns, more than the {MAX_LEAF_COLUMNS} a preview reads",
            group.num_columns()
        ))));
    }
    let share = (budget.bytes_left() / group.num_columns().max(1) as u64)
        .clamp(MIN_COLUMN_PREFIX, MAX_COLUMN_PREFIX);
    let mut ranges = Vec::with_capacity(group.num_columns());
    for column in group.columns() {
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
    }))
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
    let columns: Vec<Column> = fields
        .iter()
        .take(MAX_COLUMNS)
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
            Some("the file has no row groups".to_owned()),
        ));
    };
    let props = Arc::new(ReaderProperties::builder().build());
    let reader = SerializedRowGroupReader::new(
        Arc::new(view),
        group,
        fetched.metadata.page_index_for_row_group(0),
        props,
    )
    .map_err(|e| rows_error(&e))?;
    let iter = TreeBuilder::new()
        .with_batch_size(MAX_ROWS)
        .as_iter(schema.clone(), &reader as &dyn RowGroupReader)
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
    Ok((Table { columns, rows }, note))
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
