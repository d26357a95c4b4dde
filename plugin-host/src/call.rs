//! One plugin call: a fresh store and instance, the limits, log capture and error classification.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{ResourceLimiter, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::capture::Capture;
use crate::host::EPOCH_TICK;
use crate::{CallError, CallOutput, ErrorClass, Invocation, Limits, LogLevel, LogLine, LogSource};

mod bindings {
    //! Host bindings of the `clearflow:plugin/step` world.
    wasmtime::component::bindgen!({ world: "step", path: "../plugins/wit" });
}

pub(crate) use bindings::StepPre;
use bindings::clearflow::plugin::{log as wit_log, types as wit_types};

/// Longest message taken from a plugin's error or from its stderr into a [`CallError`].
const MAX_MESSAGE_BYTES: usize = 4 << 10;

/// Most table elements an instance may grow to; Rust plugins need a few hundred.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// A plugin ready to be instantiated.
pub(crate) struct Loaded {
    pub(crate) name: Arc<str>,
    pub(crate) pre: StepPre<State>,
    pub(crate) engine: wasmtime::Engine,
    pub(crate) limits: Limits,
    pub(crate) config: String,
    pub(crate) sha256: String,
}

/// Per-call store data.
pub(crate) struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    memory: MemoryLimiter,
    log: LogSink,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Links the granted WASI baseline and the `clearflow:plugin/log` import.
pub(crate) fn link(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    crate::policy::link_wasi(linker)?;
    bindings::Step::add_to_linker::<State, HasSelf<State>>(linker, |s| s)
}

/// The error a denied memory growth traps with.
#[derive(Debug)]
struct MemoryLimitExceeded {
    limit: usize,
    requested: usize,
}

impl std::fmt::Display for MemoryLimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "memory limit of {} bytes exceeded: {} bytes requested",
            self.limit, self.requested
        )
    }
}

impl std::error::Error for MemoryLimitExceeded {}

struct MemoryLimiter {
    limit: usize,
    used: usize,
    peak: usize,
}

impl ResourceLimiter for MemoryLimiter {
    // Failing the growth with an error, rather than returning `false`, stops
    // the guest at once: Rust guests abort on allocation failure anyway, and
    // the error lets the call be classified as a memory limit, not a trap.
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let requested = self.used - current.min(self.used) + desired;
        if requested > self.limit {
            return Err(wasmtime::Error::new(MemoryLimitExceeded {
                limit: self.limit,
                requested,
            }));
        }
        self.used = requested;
        self.peak = self.peak.max(requested);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

struct LogSink {
    plugin: Arc<str>,
    instance: String,
    step: String,
    lines: Vec<LogLine>,
    bytes: usize,
    limit: usize,
    dropped: usize,
}

/// Appended to a log line cut off at the per-call limit.
const TRUNCATED_MARKER: &str = " [truncated]";

impl LogSink {
    /// Keeps and writes to the daemon's log at most what is left of the per-call limit:
    /// the bytes are counted before anything is written, so a plugin logging without end
    /// writes no more than the limit.
    fn push(&mut self, source: LogSource, level: LogLevel, mut message: String) {
        let room = self.limit.saturating_sub(self.bytes);
        if message.len() > room {
            // The marker fits in the limit too.
            let whole = message.len();
            truncate(&mut message, room.saturating_sub(TRUNCATED_MARKER.len()));
            self.dropped += whole - message.len();
            if message.is_empty() {
                return;
            }
            message.push_str(TRUNCATED_MARKER);
        }
        self.bytes += message.len();
        emit(
            &self.plugin,
            &self.instance,
            &self.step,
            source,
            level,
            &message,
        );
        self.lines.push(LogLine {
            source,
            level,
            message,
        });
    }
}

impl wit_log::Host for State {
    fn log(&mut self, level: wit_log::Level, message: String) {
        let level = match level {
            wit_log::Level::Trace => LogLevel::Trace,
            wit_log::Level::Debug => LogLevel::Debug,
            wit_log::Level::Info => LogLevel::Info,
            wit_log::Level::Warn => LogLevel::Warn,
            wit_log::Level::Error => LogLevel::Error,
        };
        self.log.push(LogSource::Log, level, message);
    }
}

impl wit_types::Host for State {}

fn emit(
    plugin: &str,
    instance: &str,
    step: &str,
    source: LogSource,
    level: LogLevel,
    message: &str,
) {
    let source = match source {
        LogSource::Log => "log",
        LogSource::Stdout => "stdout",
        LogSource::Stderr => "stderr",
        LogSource::Host => "host",
    };
    macro_rules! at {
        ($level:expr) => {
            tracing::event!(target: "clearflow::plugin", $level, plugin, instance, step, source, "{message}")
        };
    }
    match level {
        LogLevel::Trace => at!(tracing::Level::TRACE),
        LogLevel::Debug => at!(tracing::Level::DEBUG),
        LogLevel::Info => at!(tracing::Level::INFO),
        LogLevel::Warn => at!(tracing::Level::WARN),
        LogLevel::Error => at!(tracing::Level::ERROR),
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// Runs one call of `plugin`.
pub(crate) fn call(
    plugin: &Loaded,
    inv: &Invocation,
    input: &serde_json::Value,
    timeout: Duration,
) -> Result<CallOutput, CallError> {
    let start = Instant::now();
    let limits = &plugin.limits;
    let fail = |class, message: String, logs| CallError {
        class,
        message,
        wall: start.elapsed(),
        logs,
    };
    let input = match serde_json::to_string(input) {
        Ok(s) if s.len() > limits.max_input_bytes => {
            let message = format!(
                "input of {} bytes exceeds the limit of {} bytes",
                s.len(),
                limits.max_input_bytes
            );
            return Err(fail(ErrorClass::InputTooLarge, message, Vec::new()));
        }
        Ok(s) => s,
        Err(e) => {
            return Err(fail(
                ErrorClass::InvalidInput,
                format!("input is not serialisable: {e}"),
                Vec::new(),
            ));
        }
    };

    let stdout = Capture::new(limits.max_log_bytes);
    let stderr = Capture::new(limits.max_log_bytes);
    // Empty on purpose: no args, no env, stdin closed, no preopens, no network.
    let wasi = WasiCtxBuilder::new()
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .build();
    let state = State {
        wasi,
        table: ResourceTable::new(),
        memory: MemoryLimiter {
            limit: limits.memory_bytes,
            used: 0,
            peak: 0,
        },
        log: LogSink {
            plugin: plugin.name.clone(),
            instance: inv.instance.clone(),
            step: inv.step.clone(),
            lines: Vec::new(),
            bytes: 0,
            limit: limits.max_log_bytes,
            dropped: 0,
        },
    };
    let mut store = Store::new(&plugin.engine, state);
    store.limiter(|s| &mut s.memory);
    // One extra tick: the deadline counts from the current epoch, which may be about to advance.
    let ticks = timeout.as_nanos().div_ceil(EPOCH_TICK.as_nanos()) as u64 + 1;
    store.set_epoch_deadline(ticks);
    if let Some(fuel) = limits.fuel
        && let Err(e) = store.set_fuel(fuel)
    {
        return Err(fail(
            ErrorClass::Trap,
            format!("cannot set fuel: {e:#}"),
            Vec::new(),
        ));
    }
    let call = wit_types::Invocation {
        workflow: inv.workflow.clone(),
        instance: inv.instance.clone(),
        step: inv.step.clone(),
        attempt: inv.attempt,
        config: plugin.config.clone(),
    };
    let result = plugin
        .pre
        .instantiate(&mut store)
        .and_then(|step| step.call_run(&mut store, &call, &input));
    let fuel_used = limits.fuel.map(|fuel| fuel - store.get_fuel().unwrap_or(0));
    let memory_peak = store.data().memory.peak;
    let (stderr_text, logs) = collect_logs(store.into_data().log, &stdout, &stderr);
    let wall = start.elapsed();
    let fail = |class, message: String| {
        Err(CallError {
            class,
            message,
            wall,
            logs: logs.clone(),
        })
    };
    match result {
        Ok(Ok(output)) => {
            if output.len() > limits.max_output_bytes {
                let message = format!(
                    "output of {} bytes exceeds the limit of {} bytes",
                    output.len(),
                    limits.max_output_bytes
                );
                return fail(ErrorClass::OutputTooLarge, message);
            }
            match serde_json::from_str(&output) {
                Ok(output) => Ok(CallOutput {
                    output,
                    wall,
                    memory_peak,
                    fuel_used,
                    logs,
                }),
                Err(e) => fail(
                    ErrorClass::InvalidOutput,
                    format!("output is not json: {e}"),
                ),
            }
        }
        Ok(Err(e)) => {
            let (class, mut message) = match e {
                wit_types::StepError::InvalidInput(m) => (ErrorClass::InvalidInput, m),
                wit_types::StepError::Transient(m) => (ErrorClass::Transient, m),
                wit_types::StepError::Permanent(m) => (ErrorClass::Permanent, m),
            };
            truncate(&mut message, MAX_MESSAGE_BYTES);
            fail(class, message)
        }
        Err(e) => {
            let (class, message) = classify(&e, limits, timeout, &stderr_text);
            fail(class, message)
        }
    }
}

/// Maps a wasmtime error to its class and a message that names the cause.
fn classify(
    e: &wasmtime::Error,
    limits: &Limits,
    timeout: Duration,
    stderr: &str,
) -> (ErrorClass, String) {
    if let Some(m) = e.downcast_ref::<MemoryLimitExceeded>() {
        return (ErrorClass::MemoryLimit, m.to_string());
    }
    if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
    {
        return (
            ErrorClass::Transient,
            format!("too many plugin calls at once: {e}"),
        );
    }
    let (class, mut message) = match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => (
            ErrorClass::Timeout,
            format!("deadline of {timeout:?} exceeded"),
        ),
        Some(Trap::OutOfFuel) => (
            ErrorClass::FuelExhausted,
            format!("fuel of {} exhausted", limits.fuel.unwrap_or(0)),
        ),
        Some(Trap::StackOverflow) => (
            ErrorClass::StackOverflow,
            "wasm call stack exhausted".to_owned(),
        ),
        Some(trap) => (ErrorClass::Trap, trap_message(trap)),
        None => (ErrorClass::Trap, format!("{e:#}")),
    };
    // A Rust panic prints its message to stderr before trapping; that is
    // the useful part of the error.
    let stderr = stderr.trim();
    if class == ErrorClass::Trap && !stderr.is_empty() {
        let mut tail = stderr;
        if tail.len() > MAX_MESSAGE_BYTES {
            let mut cut = tail.len() - MAX_MESSAGE_BYTES;
            while !tail.is_char_boundary(cut) {
                cut += 1;
            }
            tail = &tail[cut..];
        }
        message = format!("{message}; stderr: {tail}");
    }
    (class, message)
}

/// `wasm trap: …` once: wasmtime's own text may already start with the prefix.
fn trap_message(trap: &Trap) -> String {
    let text = trap.to_string();
    let text = text.strip_prefix("wasm trap: ").unwrap_or(&text);
    format!("wasm trap: {text}")
}

/// Turns the log sink and the captured streams into the call's log lines; returns stderr too.
fn collect_logs(mut sink: LogSink, stdout: &Capture, stderr: &Capture) -> (String, Vec<LogLine>) {
    let mut stderr_text = String::new();
    for (capture, source, level) in [
        (stdout, LogSource::Stdout, LogLevel::Info),
        (stderr, LogSource::Stderr, LogLevel::Warn),
    ] {
        let (bytes, dropped) = capture.take();
        let text = String::from_utf8_lossy(&bytes);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            sink.push(source, level, line.to_owned());
        }
        if source == LogSource::Stderr {
            stderr_text = text.into_owned();
        }
        sink.dropped += dropped;
    }
    if sink.dropped > 0 {
        let notice = format!("log output truncated: {} bytes dropped", sink.dropped);
        emit(
            &sink.plugin,
            &sink.instance,
            &sink.step,
            LogSource::Host,
            LogLevel::Warn,
            &notice,
        );
        sink.lines.push(LogLine {
            source: LogSource::Host,
            level: LogLevel::Warn,
            message: notice,
        });
    }
    (stderr_text, sink.lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_respects_char_boundaries() {
        let mut s = "澄清正名".to_owned();
        truncate(&mut s, 7);
        assert_eq!(s, "澄清");
    }

    fn sink(limit: usize) -> LogSink {
        LogSink {
            plugin: Arc::from("p"),
            instance: "i1".into(),
            step: "s".into(),
            lines: Vec::new(),
            bytes: 0,
            limit,
            dropped: 0,
        }
    }

    #[test]
    fn log_lines_are_bounded_before_they_are_kept() {
        let mut s = sink(30);
        s.push(LogSource::Log, LogLevel::Info, "12345".into());
        s.push(LogSource::Log, LogLevel::Info, "x".repeat(100_000));
        s.push(LogSource::Log, LogLevel::Info, "more".into());
        let kept: Vec<&str> = s.lines.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(kept, vec!["12345", "xxxxxxxxxxxxx [truncated]"]);
        assert_eq!(s.dropped, 100_000 - 13 + 4);
        assert_eq!(s.bytes, 30, "the marker is inside the limit");
    }

    #[test]
    fn trap_messages_have_one_prefix() {
        let m = trap_message(&Trap::UnreachableCodeReached);
        assert!(m.starts_with("wasm trap: "), "{m}");
        assert!(!m.contains("wasm trap: wasm trap"), "{m}");
    }

    #[test]
    fn limiter_tracks_peak_and_refuses_beyond_limit() {
        let mut m = MemoryLimiter {
            limit: 10,
            used: 0,
            peak: 0,
        };
        assert!(m.memory_growing(0, 4, None).unwrap());
        assert!(m.memory_growing(4, 8, None).unwrap());
        assert_eq!((m.used, m.peak), (8, 8));
        let err = m.memory_growing(8, 11, None).unwrap_err();
        assert!(err.downcast_ref::<MemoryLimitExceeded>().is_some());
        assert_eq!(m.peak, 8);
    }
}
