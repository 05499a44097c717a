//! Log lines to stderr without a `write` system call per line on the request path.
//!
//! The access log writes one INFO line per request; written straight to stderr that was a `write` call
//! (and, to a file or pipe, a trip through the kernel) on the HTTP worker for every request, about a
//! tenth of a core at 30k req/s (docs/performance.md). Here INFO and below are appended to a buffer that
//! a background thread writes out [`FLUSH_INTERVAL`] after its first line, or as soon as it holds
//! [`FLUSH_AT`] bytes; with nothing buffered the thread sleeps.
//!
//! Nothing is dropped and the order of lines is kept:
//! - WARN and ERROR lines are written at once, after everything buffered before them, so the lines
//!   that explain a failure are on stderr before the process can die of it;
//! - a full buffer ([`CAPACITY`]) is written by the thread that filled it (back-pressure, not loss);
//! - [`FlushGuard`] writes what is left when `serve` returns.
//!
//! What a `SIGKILL` can lose: at most the last [`FLUSH_INTERVAL`] of INFO/DEBUG lines.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// How long a buffered line can wait before the background thread writes it.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(20);
/// The background thread is woken early once this much is buffered.
pub const FLUSH_AT: usize = 64 * 1024;
/// A line that would grow the buffer past this is written by its own thread, with everything before it.
pub const CAPACITY: usize = 1024 * 1024;

/// The buffer and the background thread's wake-up.
struct Shared {
    /// False when the background thread could not be started: then every line is written by its caller.
    buffering: bool,
    pending: Mutex<Vec<u8>>,
    /// Held while bytes go to stderr, so a line written directly never overtakes buffered ones.
    output: Mutex<()>,
    wake: Condvar,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain bytes behind: still safe to write out.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn new(buffering: bool) -> Shared {
        Shared { buffering, pending: Mutex::new(Vec::new()), output: Mutex::new(()), wake: Condvar::new() }
    }

    /// Appends `line`, or writes it (after the buffer) to `out()` when it is urgent or the buffer is
    /// full; `out` is called only then, so a buffered line takes no stderr lock.
    fn push<W: Write>(&self, line: &[u8], urgent: bool, out: impl FnOnce() -> W) -> io::Result<()> {
        {
            let mut pending = lock(&self.pending);
            if self.buffering && !urgent && pending.len() + line.len() <= CAPACITY {
                let before = pending.len();
                pending.extend_from_slice(line);
                // Wake the writer for the first line after it went idle, and when the buffer fills.
                if before == 0 || (before < FLUSH_AT && pending.len() >= FLUSH_AT) {
                    self.wake.notify_one();
                }
                return Ok(());
            }
        }
        let _output = lock(&self.output);
        let buffered = std::mem::take(&mut *lock(&self.pending));
        let mut out = out();
        out.write_all(&buffered)?;
        out.write_all(line)
    }

    /// Writes out whatever is buffered. The emptied buffer keeps room for as much again, so the next
    /// interval's lines do not grow it step by step.
    /// Like [`Self::push`], `out` is called only after the output lock is held: always that lock, then
    /// stderr's own, in this order, or a direct write and a flush could each hold one and wait for the
    /// other.
    fn flush<W: Write>(&self, out: impl FnOnce() -> W) -> io::Result<()> {
        let _output = lock(&self.output);
        let buffered = {
            let mut pending = lock(&self.pending);
            let room = pending.len();
            std::mem::replace(&mut *pending, Vec::with_capacity(room))
        };
        if buffered.is_empty() {
            return Ok(());
        }
        let mut out = out();
        out.write_all(&buffered)?;
        out.flush()
    }

    /// Sleeps while nothing is buffered (no wake-ups on an idle server), then lets lines gather for
    /// [`FLUSH_INTERVAL`] unless the buffer reaches [`FLUSH_AT`] first.
    fn wait(&self) {
        let mut pending = lock(&self.pending);
        while pending.is_empty() {
            pending = self.wake.wait(pending).unwrap_or_else(PoisonError::into_inner);
        }
        if pending.len() < FLUSH_AT {
            let _ = self.wake.wait_timeout(pending, FLUSH_INTERVAL);
        }
    }
}

static SHARED: OnceLock<Arc<Shared>> = OnceLock::new();

fn shared() -> &'static Arc<Shared> {
    SHARED.get_or_init(|| {
        let shared = Arc::new(Shared::new(true));
        let background = shared.clone();
        let spawned = std::thread::Builder::new().name("log-writer".into()).spawn(move || {
            loop {
                background.wait();
                // stderr closed or full: nothing better to do with a log line than to drop it.
                let _ = background.flush(|| io::stderr().lock());
            }
        });
        match spawned {
            Ok(_) => shared,
            Err(_) => Arc::new(Shared::new(false)),
        }
    })
}

/// The [`MakeWriter`] given to the log formatter.
#[derive(Clone, Copy, Debug, Default)]
pub struct BufferedStderr;

/// Writes the buffer out when dropped; `telemetry::init` returns one for `serve` to hold.
#[must_use = "buffered log lines are written out when this is dropped"]
pub struct FlushGuard;

impl Drop for FlushGuard {
    fn drop(&mut self) {
        if let Some(shared) = SHARED.get() {
            let _ = shared.flush(|| io::stderr().lock());
        }
    }
}

/// Writes one whole line formatted outside the `fmt` layer (the access line), buffered like the
/// layer's lines of the same level.
pub(super) fn write_line(line: &[u8], level: &Level) {
    // stderr closed or full: nothing better to do with a log line than to drop it.
    let _ = shared().push(line, urgent(level), || io::stderr().lock());
}

/// One formatted line on its way out (the formatter hands over each line in one `write_all`).
pub struct LineWriter {
    urgent: bool,
}

impl Write for LineWriter {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        shared().push(line, self.urgent, || io::stderr().lock())?;
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BufferedStderr {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter { urgent: true }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> LineWriter {
        LineWriter { urgent: urgent(meta.level()) }
    }
}

/// WARN and ERROR lines skip the buffer.
fn urgent(level: &Level) -> bool {
    *level <= Level::WARN
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Shared {
        Shared::new(true)
    }

    #[test]
    fn info_lines_wait_for_the_flush_and_keep_their_order() {
        let shared = shared();
        let mut out = Vec::new();
        shared.push(b"one\n", false, || &mut out).unwrap();
        shared.push(b"two\n", false, || &mut out).unwrap();
        assert!(out.is_empty(), "buffered lines are not written by the request path");
        shared.flush(|| &mut out).unwrap();
        assert_eq!(out, b"one\ntwo\n");
        shared.flush(|| &mut out).unwrap();
        assert_eq!(out, b"one\ntwo\n", "a second flush writes nothing again");
    }

    #[test]
    fn an_urgent_line_is_written_at_once_after_the_buffered_ones() {
        let shared = shared();
        let mut out = Vec::new();
        shared.push(b"info\n", false, || &mut out).unwrap();
        shared.push(b"warn\n", true, || &mut out).unwrap();
        assert_eq!(out, b"info\nwarn\n");
        assert!(lock(&shared.pending).is_empty());
    }

    #[test]
    fn without_the_background_thread_every_line_is_written_at_once() {
        let shared = Shared::new(false);
        let mut out = Vec::new();
        shared.push(b"info\n", false, || &mut out).unwrap();
        assert_eq!(out, b"info\n");
    }

    #[test]
    fn a_full_buffer_is_written_by_the_caller_not_dropped() {
        let shared = shared();
        let mut out = Vec::new();
        let line = vec![b'x'; 1000];
        let fits = CAPACITY / line.len();
        for _ in 0..fits {
            shared.push(&line, false, || &mut out).unwrap();
        }
        assert!(out.is_empty());
        shared.push(&line, false, || &mut out).unwrap();
        assert_eq!(out.len(), (fits + 1) * line.len(), "everything, in order, nothing lost");
        assert!(lock(&shared.pending).is_empty());
    }

    #[test]
    fn the_writer_sleeps_while_idle_and_wakes_for_the_first_line() {
        let shared = Arc::new(shared());
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let waiting = shared.clone();
        std::thread::spawn(move || {
            waiting.wait();
            let _ = done_tx.send(());
        });
        let idle = done_rx.recv_timeout(FLUSH_INTERVAL * 5);
        assert!(idle.is_err(), "the writer must not wake while nothing is buffered");
        shared.push(b"first\n", false, Vec::new).unwrap();
        done_rx.recv_timeout(Duration::from_secs(10)).expect("the first line wakes the writer");
    }

    /// Stands in for stderr's own lock.
    struct Locked<'a>(MutexGuard<'a, Vec<u8>>);

    impl Write for Locked<'_> {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.write(bytes)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn direct_writes_and_flushes_from_two_threads_take_the_locks_in_one_order() {
        let shared = Arc::new(shared());
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        for urgent in [true, false] {
            let (shared, stderr, done) = (shared.clone(), stderr.clone(), done_tx.clone());
            std::thread::spawn(move || {
                for _ in 0..20_000 {
                    if urgent {
                        shared.push(b"warn\n", true, || Locked(lock(&stderr))).unwrap();
                    } else {
                        shared.push(b"info\n", false, || Locked(lock(&stderr))).unwrap();
                        shared.flush(|| Locked(lock(&stderr))).unwrap();
                    }
                }
                let _ = done.send(());
            });
        }
        for _ in 0..2 {
            done_rx.recv_timeout(Duration::from_secs(60)).expect("no deadlock between a direct write and a flush");
        }
        shared.flush(|| Locked(lock(&stderr))).unwrap();
        assert_eq!(lock(&stderr).len(), 40_000 * 5, "every line written once");
    }

    #[test]
    fn warn_and_error_lines_are_urgent() {
        assert!(urgent(&Level::ERROR) && urgent(&Level::WARN));
        assert!(!urgent(&Level::INFO) && !urgent(&Level::DEBUG) && !urgent(&Level::TRACE));
    }
}
