//! GGUF files (llama.cpp's container of quantized weights), checked before candle reads them.
//!
//! candle's reader trusts the file: it allocates whatever a string length, an array length
//! or a dimension count says, and divides by the alignment the metadata gives. So every
//! GGUF is first walked here, within budgets — header size, tensor and metadata counts,
//! array values, dimensions — with every length checked against the bytes that are really
//! there and every tensor's data against the file's size. A file that passes can be handed
//! to candle; one that does not is [`InferError::BadModel`] with what is wrong.

use crate::error::{InferError, Result};
use candle_core::quantized::GgmlDType;

/// The header (metadata and tensor infos) may take this much at most.
pub const MAX_HEADER_BYTES: u64 = 64 << 20;
/// Tensors in one file.
pub const MAX_TENSORS: u64 = 1 << 16;
/// Metadata keys in one file.
pub const MAX_METADATA: u64 = 1 << 16;
/// Values in all the metadata's arrays together (a vocabulary of 256k tokens with its merges
/// and scores is about 800k): candle holds each in a 32-byte value.
pub const MAX_ARRAY_VALUES: u64 = 1 << 22;
/// Dimensions of one tensor (ggml has four).
const MAX_DIMS: u32 = 4;
/// Arrays of arrays, at most this deep.
const MAX_DEPTH: u32 = 2;
/// A key may be this long (the format says 65535 bytes).
const MAX_KEY: u64 = 65535;

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;

/// What the header says, once checked.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufFacts {
    /// `general.architecture` (`llama`…), empty when absent.
    pub architecture: String,
    pub tensors: u64,
    /// Bytes of the header, padding included: where the tensor data starts.
    pub data_offset: u64,
    /// Bytes the weights take once loaded: the tensors as stored, plus the token embeddings
    /// dequantized to f32 (candle looks them up as a plain tensor), plus, for a `qwen2` or
    /// `qwen3` file without `output.weight`, the token embeddings as stored once more (candle
    /// reads them again for the tied head).
    pub memory_bytes: u64,
}

/// Checks the header of a GGUF file of `file_size` bytes from its first bytes `head`.
/// `Ok(None)`: `head` ends inside the header (read more of the file, up to
/// [`MAX_HEADER_BYTES`]).
pub fn inspect(head: &[u8], file_size: u64) -> Result<Option<GgufFacts>> {
    let mut r = Reader {
        bytes: head,
        at: 0,
        array_values: 0,
    };
    match r.header(file_size) {
        Ok(facts) => Ok(Some(facts)),
        Err(Stop::Short) if (head.len() as u64) < file_size.min(MAX_HEADER_BYTES) => Ok(None),
        Err(Stop::Short) if file_size > MAX_HEADER_BYTES => Err(bad(format!(
            "the header is larger than {MAX_HEADER_BYTES} bytes"
        ))),
        Err(Stop::Short) => Err(bad("the file ends inside its header".into())),
        Err(Stop::Bad(why)) => Err(bad(why)),
    }
}

fn bad(why: String) -> InferError {
    InferError::BadModel(format!("GGUF: {why}"))
}

enum Stop {
    /// The bytes end before the header does.
    Short,
    Bad(String),
}

type Step<T> = std::result::Result<T, Stop>;

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    array_values: u64,
}

/// A metadata value, as far as the checks need it.
enum Meta {
    Number(u64),
    Text(String),
    Other,
}

impl Meta {
    fn from_signed(v: i64) -> Meta {
        u64::try_from(v).map_or(Meta::Other, Meta::Number)
    }
}

impl Reader<'_> {
    fn take(&mut self, n: u64) -> Step<&[u8]> {
        let n = usize::try_from(n).map_err(|_| Stop::Short)?;
        let end = self.at.checked_add(n).ok_or(Stop::Short)?;
        let out = self.bytes.get(self.at..end).ok_or(Stop::Short)?;
        if end as u64 > MAX_HEADER_BYTES {
            return Err(Stop::Bad(format!(
                "the header is larger than {MAX_HEADER_BYTES} bytes"
            )));
        }
        self.at = end;
        Ok(out)
    }

    fn u32(&mut self) -> Step<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Step<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A length-prefixed string of at most `max` bytes.
    fn string(&mut self, max: u64, what: &str) -> Step<String> {
        let len = self.u64()?;
        if len > max {
            return Err(Stop::Bad(format!("{what} is {len} bytes long")));
        }
        // As candle reads them: trailing NULs dropped, invalid UTF-8 replaced.
        let text = String::from_utf8_lossy(self.take(len)?).into_owned();
        Ok(text.trim_end_matches('\0').to_owned())
    }

    fn header(&mut self, file_size: u64) -> Step<GgufFacts> {
        if self.take(4)? != MAGIC {
            return Err(Stop::Bad("not a GGUF file (no GGUF magic)".into()));
        }
        let version = self.u32()?;
        if !(2..=3).contains(&version) {
            return Err(Stop::Bad(format!(
                "version {version} is not read here (2 and 3 are)"
            )));
        }
        let tensors = self.u64()?;
        if tensors > MAX_TENSORS {
            return Err(Stop::Bad(format!(
                "{tensors} tensors, more than the {MAX_TENSORS} read"
            )));
        }
        let keys = self.u64()?;
        if keys > MAX_METADATA {
            return Err(Stop::Bad(format!(
                "{keys} metadata keys, more than the {MAX_METADATA} read"
            )));
        }
        let mut architecture = String::new();
        let mut alignment = DEFAULT_ALIGNMENT;
        for _ in 0..keys {
            let key = self.string(MAX_KEY, "a metadata key")?;
            let kind = self.u32()?;
            let value = self.value(kind, 0)?;
            match (key.as_str(), value) {
                ("general.architecture", Meta::Text(a)) => architecture = a,
                ("general.alignment", Meta::Number(a)) => alignment = a,
                _ => {}
            }
        }
        if alignment == 0 || !alignment.is_power_of_two() || alignment > 1 << 20 {
            return Err(Stop::Bad(format!(
                "general.alignment {alignment} is not a power of two"
            )));
        }
        let mut infos = Vec::new();
        for _ in 0..tensors {
            let name = self.string(MAX_KEY, "a tensor name")?;
            let dims = self.u32()?;
            if dims == 0 || dims > MAX_DIMS {
                return Err(Stop::Bad(format!("tensor {name} has {dims} dimensions")));
            }
            let mut elements: u64 = 1;
            let mut first = 0;
            for i in 0..dims {
                let d = self.u64()?;
                if i == 0 {
                    first = d;
                }
                elements = elements
                    .checked_mul(d)
                    .ok_or_else(|| Stop::Bad(format!("tensor {name} is too large")))?;
            }
            let dtype = dtype(self.u32()?)
                .ok_or_else(|| Stop::Bad(format!("tensor {name} has an unknown type")))?;
            let offset = self.u64()?;
            let block = dtype.block_size() as u64;
            if !first.is_multiple_of(block) {
                return Err(Stop::Bad(format!(
                    "tensor {name}: its rows are not whole blocks of {block}"
                )));
            }
            let bytes = (elements / block)
                .checked_mul(dtype.type_size() as u64)
                .ok_or_else(|| Stop::Bad(format!("tensor {name} is too large")))?;
            if !offset.is_multiple_of(alignment) {
                return Err(Stop::Bad(format!("tensor {name} is not aligned")));
            }
            infos.push((name, elements, offset, bytes));
        }
        let data_offset = (self.at as u64).div_ceil(alignment) * alignment;
        let mut memory_bytes: u64 = 0;
        let tied_copy = crate::arch::Arch::copies_tied_head(&architecture)
            && !infos.iter().any(|(name, ..)| name == "output.weight");
        for (name, elements, offset, bytes) in infos {
            let end = data_offset
                .checked_add(offset)
                .and_then(|o| o.checked_add(bytes));
            if end.is_none_or(|end| end > file_size) {
                return Err(Stop::Bad(format!(
                    "tensor {name}'s data runs past the end of the file"
                )));
            }
            memory_bytes = memory_bytes.saturating_add(bytes);
            if name == "token_embd.weight" {
                memory_bytes = memory_bytes.saturating_add(elements.saturating_mul(4));
                if tied_copy {
                    memory_bytes = memory_bytes.saturating_add(bytes);
                }
            }
        }
        Ok(GgufFacts {
            architecture,
            tensors,
            data_offset,
            memory_bytes,
        })
    }

    fn value(&mut self, kind: u32, depth: u32) -> Step<Meta> {
        Ok(match kind {
            // Numbers as candle reads `general.alignment`: 8-, 16- and 32-bit ones, a negative
            // signed one and 64-bit ones not counting.
            0 => Meta::Number(u64::from(self.take(1)?[0])),
            1 => Meta::from_signed(i64::from(self.take(1)?[0] as i8)),
            7 => {
                if self.take(1)?[0] > 1 {
                    return Err(Stop::Bad("a boolean is neither 0 nor 1".into()));
                }
                Meta::Other
            }
            2 => {
                let b = self.take(2)?;
                Meta::Number(u64::from(u16::from_le_bytes([b[0], b[1]])))
            }
            3 => {
                let b = self.take(2)?;
                Meta::from_signed(i64::from(i16::from_le_bytes([b[0], b[1]])))
            }
            4 => Meta::Number(u64::from(self.u32()?)),
            5 => Meta::from_signed(i64::from(self.u32()? as i32)),
            6 => {
                self.take(4)?;
                Meta::Other
            }
            10..=12 => {
                self.take(8)?;
                Meta::Other
            }
            8 => Meta::Text(self.string(MAX_HEADER_BYTES, "a string")?),
            9 => {
                if depth >= MAX_DEPTH {
                    return Err(Stop::Bad("arrays nested too deep".into()));
                }
                let inner = self.u32()?;
                let len = self.u64()?;
                // Each value takes at least a byte: a length past what is left is a lie.
                let left = (self.bytes.len() - self.at) as u64;
                if len > MAX_HEADER_BYTES {
                    return Err(Stop::Bad(format!("an array of {len} values")));
                }
                if len > left {
                    return Err(Stop::Short);
                }
                self.array_values += len;
                if self.array_values > MAX_ARRAY_VALUES {
                    return Err(Stop::Bad(format!(
                        "more than {MAX_ARRAY_VALUES} values in the metadata's arrays"
                    )));
                }
                for _ in 0..len {
                    self.value(inner, depth + 1)?;
                }
                Meta::Other
            }
            other => return Err(Stop::Bad(format!("unknown metadata type {other}"))),
        })
    }
}

/// ggml's type ids, as candle reads them.
fn dtype(id: u32) -> Option<GgmlDType> {
    Some(match id {
        0 => GgmlDType::F32,
        1 => GgmlDType::F16,
        2 => GgmlDType::Q4_0,
        3 => GgmlDType::Q4_1,
        6 => GgmlDType::Q5_0,
        7 => GgmlDType::Q5_1,
        8 => GgmlDType::Q8_0,
        9 => GgmlDType::Q8_1,
        10 => GgmlDType::Q2K,
        11 => GgmlDType::Q3K,
        12 => GgmlDType::Q4K,
        13 => GgmlDType::Q5K,
        14 => GgmlDType::Q6K,
        15 => GgmlDType::Q8K,
        30 => GgmlDType::BF16,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GGUF v3 file written by hand: metadata, one F32 tensor of `dims`, its data.
    fn file(keys: &[(&str, u32, Vec<u8>)], dims: &[u64], alignment: u64) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend(1u64.to_le_bytes());
        out.extend((keys.len() as u64).to_le_bytes());
        for (key, kind, value) in keys {
            out.extend((key.len() as u64).to_le_bytes());
            out.extend(key.as_bytes());
            out.extend(kind.to_le_bytes());
            out.extend(value);
        }
        let name = "token_embd.weight";
        out.extend((name.len() as u64).to_le_bytes());
        out.extend(name.as_bytes());
        out.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            out.extend(d.to_le_bytes());
        }
        out.extend(0u32.to_le_bytes()); // F32
        out.extend(0u64.to_le_bytes()); // offset
        while !(out.len() as u64).is_multiple_of(alignment) {
            out.push(0);
        }
        let elements = dims.iter().fold(1u64, |a, d| a.saturating_mul(*d));
        if elements < 1 << 20 {
            out.extend(vec![0u8; (elements * 4) as usize]);
        }
        out
    }

    fn string(s: &str) -> Vec<u8> {
        let mut v = (s.len() as u64).to_le_bytes().to_vec();
        v.extend(s.as_bytes());
        v
    }

    fn good() -> Vec<u8> {
        file(
            &[
                ("general.architecture", 8, string("llama")),
                ("general.alignment", 4, 64u32.to_le_bytes().to_vec()),
                ("tokenizer.ggml.scores", 9, {
                    let mut v = 6u32.to_le_bytes().to_vec();
                    v.extend(2u64.to_le_bytes());
                    v.extend(1f32.to_le_bytes());
                    v.extend(2f32.to_le_bytes());
                    v
                }),
            ],
            &[4, 3],
            64,
        )
    }

    fn refused(bytes: &[u8], size: u64) -> String {
        match inspect(bytes, size) {
            Err(InferError::BadModel(m)) => m,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_well_formed_header_is_read_and_candle_agrees() {
        let bytes = good();
        let facts = inspect(&bytes, bytes.len() as u64)
            .expect("valid")
            .expect("complete");
        assert_eq!(facts.architecture, "llama");
        assert_eq!(facts.tensors, 1);
        assert_eq!(facts.data_offset % 64, 0);
        assert_eq!(
            facts.memory_bytes,
            48 + 48,
            "stored, plus the embeddings in f32"
        );
        let content =
            candle_core::quantized::gguf_file::Content::read(&mut std::io::Cursor::new(&bytes))
                .expect("candle reads it");
        assert_eq!(content.tensor_data_offset, facts.data_offset);
    }

    #[test]
    fn a_prefix_asks_for_more_and_a_truncated_file_is_refused() {
        let bytes = good();
        let facts = inspect(&bytes, bytes.len() as u64)
            .expect("valid")
            .expect("complete");
        let mut complete_from = None;
        for cut in 0..facts.data_offset as usize {
            match inspect(&bytes[..cut], bytes.len() as u64).expect("no refusal") {
                None => assert!(complete_from.is_none(), "cut at {cut}"),
                Some(got) => {
                    assert_eq!(got, facts, "cut at {cut}");
                    complete_from.get_or_insert(cut);
                }
            }
            // The whole file, cut short: its header or its data is missing.
            let message = refused(&bytes[..cut], cut as u64);
            assert!(
                message.contains("ends inside its header")
                    || message.contains("past the end")
                    || message.contains("magic"),
                "cut at {cut}: {message}"
            );
        }
        assert!(complete_from.is_some_and(|c| c > 100), "{complete_from:?}");
        let message = refused(&bytes[..bytes.len() - 1], bytes.len() as u64 - 1);
        assert!(message.contains("past the end of the file"), "{message}");
    }

    #[test]
    fn hostile_headers_are_refused_before_anything_is_allocated() {
        let huge = u64::MAX / 2;
        let mut bad_magic = good();
        bad_magic[0] = b'X';
        let mut v1 = good();
        v1[4] = 1;
        let mut many_tensors = good();
        many_tensors[8..16].copy_from_slice(&huge.to_le_bytes());
        let mut many_keys = good();
        many_keys[16..24].copy_from_slice(&huge.to_le_bytes());
        let mut long_key = good();
        long_key[24..32].copy_from_slice(&huge.to_le_bytes());
        let long_string = file(
            &[("general.architecture", 8, huge.to_le_bytes().to_vec())],
            &[4],
            32,
        );
        let long_array = file(
            &[("tokenizer.ggml.tokens", 9, {
                let mut v = 8u32.to_le_bytes().to_vec();
                v.extend(huge.to_le_bytes());
                v
            })],
            &[4],
            32,
        );
        let nested = file(
            &[("x", 9, {
                let mut v = Vec::new();
                for _ in 0..3 {
                    v.extend(9u32.to_le_bytes());
                    v.extend(1u64.to_le_bytes());
                }
                v.extend(0u32.to_le_bytes());
                v.extend(1u64.to_le_bytes());
                v.push(0);
                v
            })],
            &[4],
            32,
        );
        let zero_alignment = file(
            &[("general.alignment", 4, 0u32.to_le_bytes().to_vec())],
            &[4],
            32,
        );
        let odd_alignment = file(
            &[("general.alignment", 4, 24u32.to_le_bytes().to_vec())],
            &[4],
            24,
        );
        let unknown_type = file(&[("x", 77, Vec::new())], &[4], 32);
        let overflowing = file(&[], &[u64::MAX, u64::MAX], 32);
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("magic", bad_magic, "magic"),
            ("version 1", v1, "version 1"),
            ("tensor count", many_tensors, "tensors"),
            ("metadata count", many_keys, "metadata keys"),
            ("key length", long_key, "a metadata key"),
            ("string length", long_string, "a string"),
            ("array length", long_array, "an array of"),
            ("nesting", nested, "nested"),
            ("zero alignment", zero_alignment, "alignment"),
            ("odd alignment", odd_alignment, "alignment"),
            ("value type", unknown_type, "unknown metadata type"),
            ("dimensions", overflowing, "too large"),
        ];
        for (what, bytes, message) in cases {
            let got = refused(&bytes, bytes.len() as u64);
            assert!(got.contains(message), "{what}: {got}");
        }
        // A header claiming more than the budget, in a file that large.
        let mut big = good();
        big[24..32].copy_from_slice(&MAX_HEADER_BYTES.to_le_bytes());
        let got = refused(&big, MAX_HEADER_BYTES * 2);
        assert!(got.contains("a metadata key"), "{got}");
    }
}
