//! What a Parquet file declares about itself, checked before the `parquet` crate acts on it:
//! the shape of its schema (which the crate builds recursively, sizing vectors by the
//! declared child counts) and the pages at the start of each column chunk (which it
//! decompresses into buffers of the declared size, and whose dictionaries it sizes by the
//! declared value count). Everything here reads the file's own bytes with [`thrift`], bounded.

use super::thrift::{Kind, Malformed, Reader};
use super::{Unavailable, human_bytes};
use std::io::Read;

/// Schemas nesting deeper than this are not previewed (real datasets nest a few levels).
pub const MAX_SCHEMA_DEPTH: usize = 32;
/// Schemas with more elements than this are not previewed.
pub const MAX_SCHEMA_ELEMENTS: usize = 100_000;
/// Dictionary pages declaring more values than this are not decoded (writers cap
/// dictionaries at about 1 MiB, a quarter million values at most).
pub const MAX_DICTIONARY_VALUES: u64 = 1 << 20;
/// What one dictionary value costs in memory once decoded (a byte-array value's handle).
pub const DICTIONARY_VALUE_COST: u64 = 32;
/// What one value of a nested (repeated) column costs once assembled into a row.
pub const NESTED_VALUE_COST: u64 = 64;

/// The shape of a schema: how many elements, how deep.
#[derive(Debug, PartialEq, Eq)]
pub struct SchemaShape {
    pub elements: usize,
    pub depth: usize,
}

/// Checks the schema in a Parquet footer (its `FileMetaData`): one root, child counts that
/// the elements can satisfy, at most [`MAX_SCHEMA_DEPTH`] levels and
/// [`MAX_SCHEMA_ELEMENTS`] elements. Other fields are skipped; the crate decodes them.
pub fn check_schema(footer: &[u8]) -> Result<SchemaShape, Unavailable> {
    let mut r = Reader::new(footer);
    let mut last = 0;
    let mut shape = None;
    loop {
        let (id, kind) = r.field(last).map_err(bad_footer)?;
        match (id, kind) {
            (_, Kind::Stop) => break,
            (2, Kind::List) => shape = Some(schema_list(&mut r)?),
            (_, kind) => r.skip(kind, 1).map_err(bad_footer)?,
        }
        last = id;
    }
    shape.ok_or_else(|| Unavailable("the file's footer has no schema".to_owned()))
}

fn schema_list(r: &mut Reader<'_>) -> Result<SchemaShape, Unavailable> {
    let (kind, len) = r.list().map_err(bad_footer)?;
    if kind != Kind::Struct {
        return Err(bad_footer(Malformed(
            "the schema is not a list of elements",
        )));
    }
    if len > MAX_SCHEMA_ELEMENTS as u64 {
        return Err(Unavailable(format!(
            "its schema has {len} elements, more than the {MAX_SCHEMA_ELEMENTS} a preview reads"
        )));
    }
    let len = len as usize;
    // The children still expected by each open group, innermost last.
    let mut open: Vec<u64> = Vec::new();
    let mut depth = 0;
    for i in 0..len {
        let children = schema_element(r)?;
        if i > 0 {
            match open.last_mut() {
                Some(left) => *left -= 1,
                None => {
                    return Err(Unavailable("its schema has more than one root".to_owned()));
                }
            }
        }
        if children > (len - i - 1) as u64 {
            return Err(Unavailable(
                "its schema declares more children than it has elements".to_owned(),
            ));
        }
        if children > 0 {
            open.push(children);
            depth = depth.max(open.len());
            if open.len() > MAX_SCHEMA_DEPTH {
                return Err(Unavailable(format!(
                    "its schema nests more than {MAX_SCHEMA_DEPTH} levels deep, more than a preview reads"
                )));
            }
        }
        while open.last() == Some(&0) {
            open.pop();
        }
    }
    if !open.is_empty() {
        return Err(Unavailable(
            "its schema declares more children than it has elements".to_owned(),
        ));
    }
    Ok(SchemaShape {
        elements: len,
        depth,
    })
}

/// One `SchemaElement`: its `num_children` (field 5), 0 when absent.
fn schema_element(r: &mut Reader<'_>) -> Result<u64, Unavailable> {
    let mut last = 0;
    let mut children = 0;
    loop {
        let (id, kind) = r.field(last).map_err(bad_footer)?;
        match (id, kind) {
            (_, Kind::Stop) => return Ok(children),
            (5, Kind::I32) => {
                children = u64::try_from(r.i32().map_err(bad_footer)?).map_err(|_| {
                    Unavailable("its schema declares a negative child count".to_owned())
                })?;
            }
            (_, kind) => r.skip(kind, 2).map_err(bad_footer)?,
        }
        last = id;
    }
}

fn bad_footer(e: Malformed) -> Unavailable {
    Unavailable(format!("the file's footer is not valid Parquet ({})", e.0))
}

/// The kinds of page a column chunk holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageKind {
    Data,
    Index,
    Dictionary,
    DataV2,
    Other,
}

/// One page header, as declared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    pub kind: PageKind,
    /// Where the page starts and its payload starts, from the chunk's start.
    pub start: u64,
    pub payload_start: u64,
    pub compressed: u64,
    pub uncompressed: u64,
    /// The values it declares (0 when its kind carries no count).
    pub values: u64,
    /// In a v2 data page, the level bytes stored uncompressed ahead of the values, and
    /// whether the values are compressed.
    pub levels: u64,
    pub compressed_values: bool,
}

impl Page {
    pub fn end(&self) -> u64 {
        self.payload_start + self.compressed
    }
}

/// The pages whose header and payload lie within `held`, the prefix read of a chunk of
/// `chunk_len` bytes, in order. A header cut by the end of the prefix ends the list; one
/// that is not a page header is an error for the first page (nothing could be shown) and
/// ends the list after it.
pub fn pages(held: &[u8], chunk_len: u64) -> Result<Vec<Page>, Unavailable> {
    let mut out = Vec::new();
    let mut at = 0u64;
    while at < held.len() as u64 && at < chunk_len {
        let mut r = Reader::new(&held[at as usize..]);
        let page = match page_header(&mut r) {
            Ok(page) => page,
            // The prefix ends inside this header: the page is not held.
            Err(e) if e.is_end() && (held.len() as u64) < chunk_len => break,
            Err(e) if out.is_empty() => {
                return Err(Unavailable(format!(
                    "its first page header is not valid ({})",
                    e.0
                )));
            }
            Err(_) => break,
        };
        let payload_start = at + r.position() as u64;
        let page = Page {
            start: at,
            payload_start,
            ..page
        };
        if page.end() > chunk_len {
            return Err(Unavailable(
                "a page runs past the end of its column chunk".to_owned(),
            ));
        }
        if page.end() > held.len() as u64 {
            break;
        }
        at = page.end();
        out.push(page);
    }
    Ok(out)
}

fn page_header(r: &mut Reader<'_>) -> Result<Page, Malformed> {
    let mut page = Page {
        kind: PageKind::Other,
        start: 0,
        payload_start: 0,
        compressed: 0,
        uncompressed: 0,
        values: 0,
        levels: 0,
        compressed_values: true,
    };
    let (mut kind, mut uncompressed, mut compressed) = (None, None, None);
    let size = |v: i32| u64::try_from(v).map_err(|_| Malformed("a page declares a negative size"));
    let mut last = 0;
    loop {
        let (id, k) = r.field(last)?;
        match (id, k) {
            (_, Kind::Stop) => break,
            (1, Kind::I32) => kind = Some(r.i32()?),
            (2, Kind::I32) => uncompressed = Some(size(r.i32()?)?),
            (3, Kind::I32) => compressed = Some(size(r.i32()?)?),
            (5 | 7 | 8, Kind::Struct) => sub_header(r, id, &mut page)?,
            (_, k) => r.skip(k, 1)?,
        }
        last = id;
    }
    let (Some(kind), Some(uncompressed), Some(compressed)) = (kind, uncompressed, compressed)
    else {
        return Err(Malformed("a page header lacks its type or sizes"));
    };
    page.kind = match kind {
        0 => PageKind::Data,
        1 => PageKind::Index,
        2 => PageKind::Dictionary,
        3 => PageKind::DataV2,
        _ => PageKind::Other,
    };
    page.uncompressed = uncompressed;
    page.compressed = compressed;
    Ok(page)
}

/// A data (5), dictionary (7) or v2 data (8) page's own header: its value count, and for v2
/// its level lengths and compression flag.
fn sub_header(r: &mut Reader<'_>, which: i16, page: &mut Page) -> Result<(), Malformed> {
    let count =
        |v: i32| u64::try_from(v).map_err(|_| Malformed("a page declares a negative count"));
    let mut last = 0;
    loop {
        let (id, k) = r.field(last)?;
        match (which, id, k) {
            (_, _, Kind::Stop) => return Ok(()),
            (_, 1, Kind::I32) => page.values = count(r.i32()?)?,
            (8, 5 | 6, Kind::I32) => page.levels += count(r.i32()?)?,
            (8, 7, Kind::Bool(b)) => page.compressed_values = b,
            (_, _, k) => r.skip(k, 2)?,
        }
        last = id;
    }
}

/// What decoding `page` costs in memory: its decompressed bytes, plus its dictionary's
/// values or, in a nested column, the values assembled into rows.
pub fn cost(page: &Page, nested: bool) -> u64 {
    let per_value = match page.kind {
        PageKind::Dictionary => DICTIONARY_VALUE_COST,
        PageKind::Data | PageKind::DataV2 if nested => NESTED_VALUE_COST,
        _ => 0,
    };
    page.uncompressed
        .saturating_add(page.values.saturating_mul(per_value))
}

/// Checks one page's declarations on their own: a dictionary's value count.
pub fn check_page(page: &Page) -> Result<(), Unavailable> {
    if page.kind == PageKind::Dictionary
        && (page.values > MAX_DICTIONARY_VALUES || page.values > page.uncompressed.max(1))
    {
        return Err(Unavailable(format!(
            "its dictionary page declares {} values in {}, more than a preview decodes",
            page.values,
            human_bytes(page.uncompressed)
        )));
    }
    if page.levels > page.uncompressed {
        return Err(Unavailable(
            "a page declares more level bytes than its size".to_owned(),
        ));
    }
    Ok(())
}

/// Checks that a gzip page inflates to no more than it declares, reading at most one byte
/// past that: the `parquet` crate's gzip codec inflates to the end whatever the header says.
pub fn check_gzip_page(page: &Page, held: &[u8]) -> Result<(), Unavailable> {
    if !page.compressed_values || page.compressed <= page.levels {
        return Ok(());
    }
    let from = (page.payload_start + page.levels) as usize;
    let to = page.end() as usize;
    let Some(stream) = held.get(from..to) else {
        return Ok(());
    };
    let declared = page.uncompressed - page.levels;
    let inflated = std::io::copy(
        &mut flate2::read::MultiGzDecoder::new(stream).take(declared + 1),
        &mut std::io::sink(),
    );
    match inflated {
        Ok(n) if n > declared => Err(Unavailable(format!(
            "a gzip page inflates past the {} it declares",
            human_bytes(declared)
        ))),
        // A stream that does not inflate is the decoder's to report.
        _ => Ok(()),
    }
}
