//! The server's log lines, written as `tracing_subscriber`'s default format writes them
//! without colours — `{time} {level} {target}: {message} {field}={value}…` — by a
//! formatter that does less per line: the date and time to the second made once per second
//! (per thread), and the fields written without the styling wrappers the default format
//! puts around each name even when it prints no colour. Every request writes an access line,
//! so this is on the path of every request.
//!
//! Lines inside spans (enabled only with a debug filter) and lines for a terminal (in
//! colour) are left to the default format: [`Lines`] hands them to it.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{DefaultFields, Format, Full, Writer};
use tracing_subscriber::fmt::time::SystemTime as DefaultTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent};
use tracing_subscriber::registry::LookupSpan;

/// The event format of the server's log (see the module docs).
pub struct Lines {
    default: Format<Full, DefaultTime>,
}

impl Lines {
    /// The format; with `ansi`, every line is the default format's (in colour).
    pub fn new(ansi: bool) -> Lines {
        Lines {
            default: Format::default().with_ansi(ansi),
        }
    }
}

impl<S> FormatEvent<S, DefaultFields> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, DefaultFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        // A record of the `log` crate names its real target and level in fields the
        // default format reads back.
        let from_log = meta.target() == "log";
        if from_log || ctx.event_scope().is_some() || writer.has_ansi_escapes() {
            return self.default.format_event(ctx, writer, event);
        }
        write_time(&mut writer, SystemTime::now())?;
        writer.write_str(level_word(meta.level()))?;
        writer.write_char(' ')?;
        writer.write_str(meta.target())?;
        writer.write_str(": ")?;
        let mut fields = Fields {
            writer: &mut writer,
            first: true,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_char('\n')
    }
}

/// The level as the default format prints it: five columns, right-aligned.
fn level_word(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => " INFO",
        Level::WARN => " WARN",
        Level::ERROR => "ERROR",
    }
}

thread_local! {
    /// The last second this thread wrote, and its text (`2026-12-07T11:38:32.`).
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// `2026-12-07T11:38:32.277155Z ` (UTC, microseconds, then a space), as the default
/// format's clock writes it.
fn write_time(writer: &mut impl fmt::Write, now: SystemTime) -> fmt::Result {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            let text = second_text(secs)?;
            *cached = (secs, text);
        }
        writer.write_str(&cached.1)
    })?;
    write!(writer, "{:06}Z ", since.subsec_micros())
}

/// The date and time of `secs` after the epoch, to the second, and the decimal point.
fn second_text(secs: u64) -> Result<String, fmt::Error> {
    let at = i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .ok_or(fmt::Error)?;
    let mut text = String::with_capacity(24);
    write!(
        text,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )?;
    Ok(text)
}

/// The fields of one line, as the default format writes them: the message first as it is,
/// then `name=value` with the value's `Debug` (a `%` field's is its `Display`, a string's
/// is quoted), one space between.
struct Fields<'w, 'a> {
    writer: &'w mut Writer<'a>,
    first: bool,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    /// One field: the message as it is (escaped), any other as `name=value`; the fields a
    /// record of the `log` crate carries about itself are left out, as the default does.
    fn field(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if self.result.is_err() || field.name().starts_with("log.") {
            return;
        }
        self.result = self.separate().and_then(|()| {
            if field.name() == "message" {
                Escaped(&mut *self.writer).write_fmt(value)
            } else {
                self.name(field)?;
                self.writer.write_fmt(value)
            }
        });
    }

    fn separate(&mut self) -> fmt::Result {
        if self.first {
            self.first = false;
            Ok(())
        } else {
            self.writer.write_char(' ')
        }
    }

    /// `name=` (a raw identifier's name without its `r#`).
    fn name(&mut self, field: &Field) -> fmt::Result {
        self.name_suffix(field, "=")
    }

    fn name_suffix(&mut self, field: &Field, suffix: &str) -> fmt::Result {
        let name = field.name();
        self.writer
            .write_str(name.strip_prefix("r#").unwrap_or(name))?;
        self.writer.write_str(suffix)
    }
}

/// Control characters that could drive a terminal, written as escapes (as the default
/// format writes a message and an error).
struct Escaped<'w, W: fmt::Write>(&'w mut W);

impl<W: fmt::Write> fmt::Write for Escaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let plain = |c: char| {
            !matches!(
                c,
                '\x1b' | '\x07' | '\x08' | '\x0c' | '\x7f' | '\u{80}'..='\u{9f}'
            )
        };
        if s.chars().all(plain) {
            return self.0.write_str(s);
        }
        for c in s.chars() {
            match c {
                '\x1b' => self.0.write_str("\\x1b")?,
                '\x07' => self.0.write_str("\\x07")?,
                '\x08' => self.0.write_str("\\x08")?,
                '\x0c' => self.0.write_str("\\x0c")?,
                '\x7f' => self.0.write_str("\\x7f")?,
                '\u{80}'..='\u{9f}' => write!(self.0, "\\u{{{:x}}}", c as u32)?,
                c => self.0.write_char(c)?,
            }
        }
        Ok(())
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.field(field, format_args!("{value}"));
        } else {
            self.field(field, format_args!("{value:?}"));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, format_args!("{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, format_args!("{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, format_args!("{value:?}"));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        // The default format writes an error's `Display`, then its sources'.
        if self.result.is_err() || field.name().starts_with("log.") {
            return;
        }
        self.result = self.separate().and_then(|()| {
            self.name(field)?;
            write!(Escaped(&mut *self.writer), "{value}")?;
            let mut source = value.source();
            if source.is_some() {
                self.writer.write_str(" ")?;
                self.name_suffix(field, ".sources=[")?;
                let mut first = true;
                while let Some(s) = source {
                    if !first {
                        self.writer.write_str(", ")?;
                    }
                    first = false;
                    write!(Escaped(&mut *self.writer), "{s}")?;
                    source = s.source();
                }
                self.writer.write_char(']')?;
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    impl Buffer {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
        }
    }

    #[derive(Debug)]
    struct Outer(Inner);
    #[derive(Debug)]
    struct Inner;
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("the outer failure")
        }
    }
    impl fmt::Display for Inner {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("its cause")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    impl std::error::Error for Inner {}

    /// Every kind of field the server's lines carry, at every level.
    fn emit_every_kind() {
        let method = axum::http::Method::GET;
        let error = Outer(Inner);
        let r#type = "model";
        tracing::info!(
            target: "trove::access",
            method = %method,
            path = %"/acme/m/resolve/main/a b\"c",
            status = 200u16,
            size_bytes = 4096u64,
            delta = -3i64,
            user = "admin",
            complete = true,
            "request"
        );
        tracing::warn!(
            error = &error as &(dyn std::error::Error + 'static),
            "it failed: {}",
            3
        );
        tracing::error!(r#type, list = ?vec![1, 2], ratio = 1.5f64, "quoted \"message\"");
        tracing::debug!("only a message, \x1b[31mred\x1b[0m \u{85} \x07");
        tracing::info!(text = "a \x1b[1m string", "with {}", "\x1b[2J");
        tracing::info!(plain = "no message");
    }

    fn lines_of(fast: bool) -> String {
        let buffer = Buffer::default();
        let builder = tracing_subscriber::fmt()
            .with_max_level(Level::TRACE)
            .with_writer(buffer.clone())
            .with_ansi(false);
        if fast {
            let subscriber = builder.event_format(Lines::new(false)).finish();
            tracing::subscriber::with_default(subscriber, emit_every_kind);
        } else {
            let subscriber = builder.finish();
            tracing::subscriber::with_default(subscriber, emit_every_kind);
        }
        buffer.text()
    }

    #[test]
    fn lines_read_as_the_default_format_writes_them() {
        let (fast, default) = (lines_of(true), lines_of(false));
        let without_time = |text: &str| -> Vec<String> {
            text.lines()
                .map(|l| {
                    l.split_once(' ')
                        .map(|(_, rest)| rest.to_owned())
                        .unwrap_or_default()
                })
                .collect()
        };
        assert_eq!(fast.lines().count(), 6, "{fast}");
        assert_eq!(
            without_time(&fast),
            without_time(&default),
            "{fast}\n{default}"
        );
        for line in fast.lines() {
            let time = line.split(' ').next().unwrap_or_default();
            assert!(
                time.len() == 27
                    && time.ends_with('Z')
                    && time.as_bytes()[10] == b'T'
                    && time.as_bytes()[19] == b'.',
                "{line}"
            );
        }
    }

    #[test]
    fn the_time_is_utc_to_the_microsecond() {
        let at = UNIX_EPOCH + std::time::Duration::from_micros(1_796_642_312_277_155);
        let mut text = String::new();
        write_time(&mut text, at).expect("written");
        assert_eq!(text, "2026-12-07T11:18:32.277155Z ");
        // The same second again (from the thread's cache), then the next.
        let mut text = String::new();
        write_time(&mut text, at + std::time::Duration::from_micros(5)).expect("written");
        assert_eq!(text, "2026-12-07T11:18:32.277160Z ");
        let mut text = String::new();
        write_time(&mut text, at + std::time::Duration::from_secs(1)).expect("written");
        assert_eq!(text, "2026-12-07T11:18:33.277155Z ");
    }
}
