use std::io;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use super::*;

/// Collects everything the subscriber writes.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// Runs `f` with a daprd-format subscriber installed for this thread only; returns the lines.
fn capture(level: &str, json: bool, f: impl FnOnce()) -> Vec<String> {
    let out = Capture::default();
    let writer = out.clone();
    let sub = subscriber(level, json, "order-svc", move || writer.clone()).unwrap();
    tracing::subscriber::with_default(sub, f);
    out.text().lines().map(str::to_owned).collect()
}

fn json_lines(level: &str, f: impl FnOnce()) -> Vec<Map<String, Value>> {
    capture(level, true, f)
        .iter()
        .map(|line| match serde_json::from_str(line) {
            Ok(Value::Object(map)) => map,
            other => panic!("not a JSON object: {line:?} ({other:?})"),
        })
        .collect()
}

#[test]
fn json_line_has_exactly_daprd_keys() {
    let lines = json_lines("info", || {
        tracing::info!(target: "outrigger::invoke::outbound", "invoking \"beta\"");
    });
    assert_eq!(lines.len(), 1);
    let line = &lines[0];
    let mut keys: Vec<&str> = line.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["app_id", "instance", "level", "msg", "scope", "time", "type", "ver"]
    );
    assert_eq!(line["app_id"], "order-svc");
    assert_eq!(line["level"], "info");
    assert_eq!(line["msg"], "invoking \"beta\"");
    assert_eq!(line["scope"], "outrigger.invoke");
    assert_eq!(line["type"], "log");
    assert_eq!(line["ver"], env!("CARGO_PKG_VERSION"));
    let host = gethostname::gethostname();
    assert_eq!(line["instance"], host.to_string_lossy().as_ref());
    let time = line["time"].as_str().unwrap();
    assert!(
        time.len() >= 20 && time.ends_with('Z') && &time[10..11] == "T",
        "{time}"
    );
}

#[test]
fn json_keys_are_written_in_logrus_order() {
    let lines = capture("info", true, || tracing::info!(target: "outrigger", "x"));
    let line = &lines[0];
    let positions: Vec<usize> = [
        "\"app_id\"",
        "\"instance\"",
        "\"level\"",
        "\"msg\"",
        "\"scope\"",
        "\"time\"",
        "\"type\"",
        "\"ver\"",
    ]
    .iter()
    .map(|k| line.find(k).unwrap())
    .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{line}");
}

#[test]
fn levels_use_logrus_names_and_the_filter_applies() {
    let lines = json_lines("info", || {
        tracing::debug!(target: "outrigger::api", "hidden");
        tracing::info!(target: "outrigger::api", "i");
        tracing::warn!(target: "outrigger::api", "w");
        tracing::error!(target: "outrigger::api", "e");
    });
    let levels: Vec<&str> = lines.iter().map(|l| l["level"].as_str().unwrap()).collect();
    assert_eq!(levels, ["info", "warning", "error"]);

    let lines = json_lines(
        "debug",
        || tracing::debug!(target: "outrigger::api", "shown"),
    );
    assert_eq!(lines[0]["level"], "debug");
}

#[test]
fn dependencies_are_capped_at_info() {
    let lines = json_lines("debug", || {
        tracing::debug!(target: "h2::codec", "noise");
        tracing::info!(target: "h2::codec", "kept");
    });
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["scope"], "h2.codec");
}

#[test]
fn fields_become_extra_keys_with_their_types() {
    let lines = json_lines("info", || {
        let err = io::Error::other("boom");
        tracing::info!(
            target: "outrigger::sidecar",
            port = 3500u16,
            ready = true,
            ratio = 0.5,
            peer = "beta",
            error = &err as &(dyn std::error::Error + 'static),
            msg = "clash",
            "started"
        );
    });
    let line = &lines[0];
    assert_eq!(line["msg"], "started");
    assert_eq!(line["port"], 3500);
    assert_eq!(line["ready"], true);
    assert_eq!(line["ratio"], 0.5);
    assert_eq!(line["peer"], "beta");
    assert_eq!(line["error"], "boom");
    // logrus renames a field that clashes with one of its own keys.
    assert_eq!(line["fields.msg"], "clash");
}

#[test]
fn log_crate_records_take_their_scope_from_log_target() {
    let lines = json_lines("info", || {
        tracing::event!(target: "log", tracing::Level::INFO, log.line = 7u32, log.target = "redis::aio::connection", "from log");
    });
    let line = &lines[0];
    assert_eq!(line["scope"], "redis.aio");
    assert!(!line.keys().any(|k| k.starts_with("log.")), "{line:?}");
}

#[test]
fn message_escaping_round_trips() {
    let msg = "line1\nline2\t\"quoted\" \\ é \u{7}";
    let lines = json_lines("info", || tracing::info!(target: "outrigger", "{msg}"));
    assert_eq!(lines[0]["msg"], msg);
}

#[test]
fn text_format_is_logrus_logfmt() {
    let lines = capture("info", false, || {
        tracing::warn!(target: "outrigger::invoke", peer = "beta", "app \"beta\" unreachable");
    });
    assert_eq!(lines.len(), 1);
    let line = &lines[0];
    assert!(line.starts_with("time=\""), "{line}");
    let mut instance = String::new();
    escape::write_text_value(&mut instance, &gethostname::gethostname().to_string_lossy()).unwrap();
    let expected_rest = format!(
        " level=warning msg=\"app \\\"beta\\\" unreachable\" app_id=order-svc instance={instance} \
         scope=outrigger.invoke type=log ver={} peer=beta",
        env!("CARGO_PKG_VERSION")
    );
    let after_time = &line[line.find("\" level=").unwrap() + 1..];
    assert_eq!(after_time, expected_rest);
}

#[test]
fn level_names_are_checked_case_insensitively() {
    assert_eq!(parse_level("debug"), Ok(LevelFilter::DEBUG));
    assert_eq!(parse_level("INFO"), Ok(LevelFilter::INFO));
    assert_eq!(parse_level("warn"), Ok(LevelFilter::WARN));
    assert_eq!(parse_level("error"), Ok(LevelFilter::ERROR));
    assert_eq!(parse_level("fatal"), Ok(LevelFilter::ERROR));
}

#[test]
fn invalid_level_is_an_error_listing_the_valid_ones() {
    let err = parse_level("verbose").unwrap_err();
    assert_eq!(err.given, "verbose");
    let text = err.to_string();
    for level in VALID_LEVELS {
        assert!(text.contains(level), "{text}");
    }
    assert!(subscriber("warning", true, "a", io::sink).is_err());
}
