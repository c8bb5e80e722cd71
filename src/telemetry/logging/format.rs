//! The log line shapes of daprd (dapr/kit `logger`, built on logrus), so log pipelines that parse
//! daprd's output keep working:
//!
//! * JSON (`--log-as-json`): `{"app_id":…,"instance":…,"level":…,"msg":…,"scope":…,"time":…,
//!   "type":"log","ver":…}`. logrus serialises a Go map, so its keys come out sorted; we write the
//!   fixed keys in that same order and append event fields after them.
//! * Text (default): logrus' logfmt, `time="…" level=info msg="…" app_id=… instance=… scope=…
//!   type=log ver=…`, then event fields.
//!
//! Levels are logrus' names: `debug`, `info`, `warning` (not `warn`), `error`.

use std::fmt::{self, Write};
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use super::escape::{is_bare_byte, write_json_str, write_text_value, JsonEscape, QuoteEscape};
use super::timefmt::write_rfc3339_nanos;

/// Keys daprd always writes. An event field with one of these names is written as
/// `fields.<name>`: logrus does that for `time`, `msg` and `level`; doing it for every fixed key
/// means a line never carries the same key twice.
const RESERVED: [&str; 8] = [
    "app_id", "instance", "level", "msg", "scope", "time", "type", "ver",
];

/// A [`FormatEvent`] writing daprd's log lines; see the module docs for the shapes.
#[derive(Debug, Clone)]
pub struct DaprFormat {
    json: bool,
    /// The per-process parts, rendered and escaped once instead of on every event.
    /// JSON: `{"app_id":"…","instance":"…","level":"`; text: ` app_id=… instance=…`.
    ids: String,
    /// JSON: `,"type":"log","ver":"…"`; text: ` type=log ver=…`.
    tail: String,
}

impl DaprFormat {
    /// `instance` is the host name (daprd uses `os.Hostname()`), `ver` our crate version.
    pub fn new(json: bool, app_id: &str) -> Self {
        let host = gethostname::gethostname();
        Self::with_instance(json, app_id, &host.to_string_lossy())
    }

    fn with_instance(json: bool, app_id: &str, instance: &str) -> Self {
        let ver = env!("CARGO_PKG_VERSION");
        let (mut ids, mut tail) = (String::new(), String::new());
        // Writing into a String cannot fail; `let _` keeps this constructor infallible.
        let _ = if json {
            render_json_parts(&mut ids, &mut tail, app_id, instance, ver)
        } else {
            render_text_parts(&mut ids, &mut tail, app_id, instance, ver)
        };
        Self { json, ids, tail }
    }

    fn format_json(&self, w: &mut impl Write, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        w.write_str(&self.ids)?;
        w.write_str(level_name(meta.level()))?;
        w.write_str("\",\"msg\":")?;
        if !visit(w, event, Style::Json, Pass::Message)? {
            w.write_str("\"\"")?;
        }
        w.write_str(",\"scope\":\"")?;
        // Only records bridged from the `log` crate carry `log.target`.
        if !(meta.target() == "log" && visit(w, event, Style::Json, Pass::LogTarget)?) {
            write_scope(&mut JsonEscape(w), meta.target())?;
        }
        w.write_str("\",\"time\":\"")?;
        write_rfc3339_nanos(w, SystemTime::now())?;
        w.write_char('"')?;
        w.write_str(&self.tail)?;
        visit(w, event, Style::Json, Pass::Extras)?;
        w.write_str("}\n")
    }

    fn format_text(&self, w: &mut impl Write, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        w.write_str("time=\"")?;
        write_rfc3339_nanos(w, SystemTime::now())?;
        w.write_str("\" level=")?;
        w.write_str(level_name(meta.level()))?;
        w.write_str(" msg=")?;
        if !visit(w, event, Style::Text, Pass::Message)? {
            w.write_str("\"\"")?;
        }
        w.write_str(&self.ids)?;
        w.write_str(" scope=")?;
        // Only records bridged from the `log` crate carry `log.target`.
        if !(meta.target() == "log" && visit(w, event, Style::Text, Pass::LogTarget)?) {
            write_text_scope(w, meta.target())?;
        }
        w.write_str(&self.tail)?;
        visit(w, event, Style::Text, Pass::Extras)?;
        w.write_char('\n')
    }
}

impl<S, N> FormatEvent<S, N> for DaprFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        if self.json {
            self.format_json(&mut writer, event)
        } else {
            self.format_text(&mut writer, event)
        }
    }
}

fn render_json_parts(
    ids: &mut String,
    tail: &mut String,
    app: &str,
    host: &str,
    ver: &str,
) -> fmt::Result {
    ids.write_str("{\"app_id\":")?;
    write_json_str(ids, app)?;
    ids.write_str(",\"instance\":")?;
    write_json_str(ids, host)?;
    ids.write_str(",\"level\":\"")?;
    tail.write_str(",\"type\":\"log\",\"ver\":")?;
    write_json_str(tail, ver)
}

fn render_text_parts(
    ids: &mut String,
    tail: &mut String,
    app: &str,
    host: &str,
    ver: &str,
) -> fmt::Result {
    ids.write_str(" app_id=")?;
    write_text_value(ids, app)?;
    ids.write_str(" instance=")?;
    write_text_value(ids, host)?;
    tail.write_str(" type=log ver=")?;
    write_text_value(tail, ver)
}

/// logrus' level names (`logrus.Level.String()`).
fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// daprd scopes are short dotted names (`dapr.runtime.http`); ours come from the module path,
/// cut to crate and top-level module: `outrigger::invoke::outbound` -> `outrigger.invoke`.
fn write_scope(w: &mut impl Write, target: &str) -> fmt::Result {
    for (i, part) in target.split("::").take(2).enumerate() {
        if i > 0 {
            w.write_char('.')?;
        }
        w.write_str(part)?;
    }
    Ok(())
}

fn write_text_scope(w: &mut impl Write, target: &str) -> fmt::Result {
    // `:` only occurs in the `::` separators that become `.`, so it never forces quoting.
    if target.bytes().any(|b| b != b':' && !is_bare_byte(b)) {
        w.write_char('"')?;
        write_scope(&mut QuoteEscape(w), target)?;
        w.write_char('"')
    } else {
        write_scope(w, target)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    Json,
    Text,
}

/// Which fields one pass over the event writes. Several cheap passes let the message go in its
/// fixed position without buffering it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Only the `message` field's value.
    Message,
    /// Only `log.target`, which `tracing-log` sets for records from the `log` crate (whose
    /// metadata target is just "log"); written as the scope.
    LogTarget,
    /// Every other field as ` key=value` / `,"key":value`.
    Extras,
}

/// Runs one pass; returns whether a matching field was found.
fn visit(
    w: &mut impl Write,
    event: &Event<'_>,
    style: Style,
    pass: Pass,
) -> Result<bool, fmt::Error> {
    let mut visitor = FieldVisitor {
        w,
        style,
        pass,
        found: false,
        result: Ok(()),
    };
    event.record(&mut visitor);
    visitor.result.map(|()| visitor.found)
}

struct FieldVisitor<'a, W: Write> {
    w: &'a mut W,
    style: Style,
    pass: Pass,
    found: bool,
    /// `Visit` methods cannot fail, so the first write error is kept here.
    result: fmt::Result,
}

impl<W: Write> FieldVisitor<'_, W> {
    fn wants(&self, field: &Field) -> bool {
        let name = field.name();
        self.result.is_ok()
            && match self.pass {
                Pass::Message => name == "message",
                Pass::LogTarget => name == "log.target",
                Pass::Extras => name != "message" && !name.starts_with("log."),
            }
    }

    /// Writes the key for the Extras pass; the other passes write a bare value.
    fn begin(&mut self, field: &Field) -> fmt::Result {
        self.found = true;
        if self.pass != Pass::Extras {
            return Ok(());
        }
        let name = field.name();
        let prefix = if RESERVED.contains(&name) {
            "fields."
        } else {
            ""
        };
        match self.style {
            Style::Json => {
                self.w.write_str(",\"")?;
                self.w.write_str(prefix)?;
                JsonEscape(self.w).write_str(name)?;
                self.w.write_str("\":")
            }
            Style::Text => write!(self.w, " {prefix}{name}="),
        }
    }

    fn quoted(&mut self, value: fmt::Arguments<'_>) -> fmt::Result {
        self.w.write_char('"')?;
        match self.style {
            Style::Json => JsonEscape(self.w).write_fmt(value)?,
            Style::Text => QuoteEscape(self.w).write_fmt(value)?,
        }
        self.w.write_char('"')
    }

    /// Numbers and booleans stay bare (JSON keeps their type, as logrus does), except as the
    /// message, which is always a string.
    fn bare(&mut self, field: &Field, value: &dyn fmt::Display) {
        if self.wants(field) && self.pass != Pass::LogTarget {
            self.result = self.begin(field).and_then(|()| {
                if self.pass == Pass::Message {
                    self.quoted(format_args!("{value}"))
                } else {
                    write!(self.w, "{value}")
                }
            });
        }
    }
}

impl<W: Write> Visit for FieldVisitor<'_, W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if !self.wants(field) {
            return;
        }
        self.result = match (self.pass, self.style) {
            (Pass::LogTarget, Style::Json) => {
                self.found = true;
                write_scope(&mut JsonEscape(self.w), value)
            }
            (Pass::LogTarget, Style::Text) => {
                self.found = true;
                write_text_scope(self.w, value)
            }
            (_, Style::Json) => self
                .begin(field)
                .and_then(|()| write_json_str(self.w, value)),
            (_, Style::Text) => self
                .begin(field)
                .and_then(|()| write_text_value(self.w, value)),
        };
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.wants(field) && self.pass != Pass::LogTarget {
            self.result = self
                .begin(field)
                .and_then(|()| self.quoted(format_args!("{value:?}")));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.wants(field) && self.pass != Pass::LogTarget {
            self.result = self
                .begin(field)
                .and_then(|()| self.quoted(format_args!("{value}")));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.bare(field, &value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.bare(field, &value);
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.bare(field, &value);
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.bare(field, &value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.bare(field, &value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.bare(field, &value);
        } else if self.wants(field) && self.pass != Pass::LogTarget {
            // JSON has no NaN/Infinity literals.
            self.result = self
                .begin(field)
                .and_then(|()| self.quoted(format_args!("{value}")));
        }
    }
}
