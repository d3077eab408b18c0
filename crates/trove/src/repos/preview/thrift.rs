//! A reader of Thrift's compact protocol, just enough to check what a Parquet file declares
//! (its schema's shape, its page headers) before the `parquet` crate acts on it. Every read
//! is bounded by the bytes given, every nesting by a depth budget, and no length read from
//! the input sizes an allocation.

/// Field and element types of the compact protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Stop,
    Bool(bool),
    Byte,
    I16,
    I32,
    I64,
    Double,
    Binary,
    List,
    Set,
    Map,
    Struct,
    Uuid,
}

impl Kind {
    fn of(nibble: u8) -> Result<Kind, Malformed> {
        Ok(match nibble {
            0 => Kind::Stop,
            1 => Kind::Bool(true),
            2 => Kind::Bool(false),
            3 => Kind::Byte,
            4 => Kind::I16,
            5 => Kind::I32,
            6 => Kind::I64,
            7 => Kind::Double,
            8 => Kind::Binary,
            9 => Kind::List,
            10 => Kind::Set,
            11 => Kind::Map,
            12 => Kind::Struct,
            13 => Kind::Uuid,
            _ => return Err(Malformed("an unknown Thrift type")),
        })
    }
}

/// Why bytes are not the Thrift they should be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

const END: &str = "the bytes end inside a Thrift value";

impl Malformed {
    /// The bytes ended before the value did: more bytes might have held it.
    pub fn is_end(&self) -> bool {
        self.0 == END
    }
}

/// Compact-protocol values read from a byte slice.
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

/// Nesting deeper than this is refused (Parquet's own structures nest 5 levels).
pub const MAX_DEPTH: usize = 32;

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    /// Bytes read so far.
    pub fn position(&self) -> usize {
        self.at
    }

    fn byte(&mut self) -> Result<u8, Malformed> {
        let b = *self.bytes.get(self.at).ok_or(Malformed(END))?;
        self.at += 1;
        Ok(b)
    }

    fn skip_bytes(&mut self, n: u64) -> Result<(), Malformed> {
        let left = (self.bytes.len() - self.at) as u64;
        if n > left {
            return Err(Malformed(END));
        }
        self.at += n as usize;
        Ok(())
    }

    fn varint(&mut self) -> Result<u64, Malformed> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            if shift == 63 && b > 1 {
                return Err(Malformed("a Thrift integer is longer than 64 bits"));
            }
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Malformed("a Thrift integer is longer than 64 bits"))
    }

    pub fn i64(&mut self) -> Result<i64, Malformed> {
        let v = self.varint()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    pub fn i32(&mut self) -> Result<i32, Malformed> {
        i32::try_from(self.i64()?).map_err(|_| Malformed("a Thrift i32 is out of range"))
    }

    /// The next field of a struct: `(id, kind)`, `Kind::Stop` at its end.
    pub fn field(&mut self, last_id: i16) -> Result<(i16, Kind), Malformed> {
        let header = self.byte()?;
        let kind = Kind::of(header & 0x0f)?;
        if kind == Kind::Stop {
            return Ok((0, Kind::Stop));
        }
        let delta = header >> 4;
        let id = if delta == 0 {
            i16::try_from(self.i64()?)
                .map_err(|_| Malformed("a Thrift field id is out of range"))?
        } else {
            last_id
                .checked_add(i16::from(delta))
                .ok_or(Malformed("a Thrift field id is out of range"))?
        };
        Ok((id, kind))
    }

    /// A list or set header: its element kind and length (checked against the bytes left,
    /// each element taking at least one byte).
    pub fn list(&mut self) -> Result<(Kind, u64), Malformed> {
        let header = self.byte()?;
        let kind = Kind::of(header & 0x0f)?;
        let len = match header >> 4 {
            15 => self.varint()?,
            n => u64::from(n),
        };
        if len > (self.bytes.len() - self.at) as u64 {
            return Err(Malformed(END));
        }
        Ok((kind, len))
    }

    /// Skips a value of `kind`, nested at most [`MAX_DEPTH`] deep.
    pub fn skip(&mut self, kind: Kind, depth: usize) -> Result<(), Malformed> {
        if depth > MAX_DEPTH {
            return Err(Malformed("Thrift values nest too deep"));
        }
        match kind {
            Kind::Stop => Err(Malformed("a Thrift STOP where a value should be")),
            Kind::Bool(_) => Ok(()),
            Kind::Byte => self.skip_bytes(1),
            Kind::I16 | Kind::I32 | Kind::I64 => self.varint().map(|_| ()),
            Kind::Double => self.skip_bytes(8),
            Kind::Uuid => self.skip_bytes(16),
            Kind::Binary => {
                let len = self.varint()?;
                self.skip_bytes(len)
            }
            Kind::List | Kind::Set => {
                let (element, len) = self.list()?;
                for _ in 0..len {
                    self.skip_element(element, depth + 1)?;
                }
                Ok(())
            }
            Kind::Map => {
                let len = self.varint()?;
                if len == 0 {
                    return Ok(());
                }
                if len > (self.bytes.len() - self.at) as u64 {
                    return Err(Malformed(END));
                }
                let types = self.byte()?;
                let (key, value) = (Kind::of(types >> 4)?, Kind::of(types & 0x0f)?);
                for _ in 0..len {
                    self.skip_element(key, depth + 1)?;
                    self.skip_element(value, depth + 1)?;
                }
                Ok(())
            }
            Kind::Struct => {
                let mut last = 0;
                loop {
                    let (id, kind) = self.field(last)?;
                    if kind == Kind::Stop {
                        return Ok(());
                    }
                    self.skip(kind, depth + 1)?;
                    last = id;
                }
            }
        }
    }

    /// Skips one element of a list, set or map (booleans there take a byte).
    pub fn skip_element(&mut self, kind: Kind, depth: usize) -> Result<(), Malformed> {
        match kind {
            Kind::Bool(_) => self.skip_bytes(1),
            other => self.skip(other, depth),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_varints_and_fields() {
        // struct { 1: i32 = -3, 2: i64 = 300, 20: binary "ab" } STOP
        let bytes = [
            0x15, 0x05, 0x16, 0xd8, 0x04, 0x08, 0x28, 0x02, b'a', b'b', 0x00,
        ];
        let mut r = Reader::new(&bytes);
        assert_eq!(r.field(0), Ok((1, Kind::I32)));
        assert_eq!(r.i32(), Ok(-3));
        assert_eq!(r.field(1), Ok((2, Kind::I64)));
        assert_eq!(r.i64(), Ok(300));
        assert_eq!(r.field(2), Ok((20, Kind::Binary)));
        r.skip(Kind::Binary, 0).expect("binary");
        assert_eq!(r.field(20), Ok((0, Kind::Stop)));
        assert_eq!(r.position(), bytes.len());
    }

    #[test]
    fn hostile_lengths_and_depths_are_errors_not_allocations() {
        // A binary claiming 2^62 bytes, a list claiming 2^40 elements.
        let mut huge = vec![0x80; 8];
        huge.push(0x40);
        assert!(Reader::new(&huge).skip(Kind::Binary, 0).is_err());
        let list = [0xf5, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20];
        assert!(Reader::new(&list).skip(Kind::List, 0).is_err());
        // Structs nested 10,000 deep: field 1 of type struct, over and over.
        let deep = vec![0x1c; 10_000];
        assert_eq!(
            Reader::new(&deep).skip(Kind::Struct, 0),
            Err(Malformed("Thrift values nest too deep"))
        );
        // An 11-byte varint.
        assert!(Reader::new(&[0xff; 11]).i64().is_err());
        assert!(Reader::new(&[]).i32().is_err());
    }
}
