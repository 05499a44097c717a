//! The audit writer's own thread: a current-thread runtime that the request workers never share, at
//! the `SCHED_BATCH` policy on Linux.
//!
//! Why: a fail-closed decode kicks the writer and waits for its commit. Woken as a normal thread, the
//! writer (and the SQLite thread it talks to, which inherits the policy) preempted the request worker
//! in the middle of its scheduler turn: at 1x1KiB on one core the worker was preempted ~0.45 times per
//! request, commits carried fewer rows, and every switch cost time. A `SCHED_BATCH` thread is never
//! woken *into* a running thread: it runs when a core is idle or the running thread's slice ends, with
//! the same CPU share as any other thread (it is not a lower priority, so it cannot starve). Measured
//! in docs/performance.md. Lowering one's own policy needs no privilege.

use std::future::Future;

use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A runtime for the writer, built on the calling thread so that a failure is reported at start.
/// Create the writer's database pool inside `runtime.enter()`: its maintenance tasks then run here.
pub(super) fn runtime() -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

/// Runs `task` to completion on a new thread named `name`, on `runtime`. The returned handle (a task
/// of the caller's runtime) finishes when the thread does, also if `task` panicked.
pub(super) fn spawn<F>(name: &str, runtime: Runtime, task: F) -> std::io::Result<JoinHandle<()>>
where
    F: Future<Output = ()> + Send + 'static,
{
    let (done, finished) = oneshot::channel::<()>();
    std::thread::Builder::new().name(name.to_owned()).spawn(move || {
        never_preempt_on_wakeup();
        runtime.block_on(task);
        let _ = done.send(());
    })?;
    Ok(tokio::spawn(async move {
        let _ = finished.await;
    }))
}

/// Puts the calling thread (and the threads it starts later, such as SQLite's) under `SCHED_BATCH`.
/// Best effort: where it is refused or unsupported the writer runs as a normal thread.
fn never_preempt_on_wakeup() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param that outlives the call.
        let result = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
        if result != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "The audit writer runs as a normal thread.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_task_runs_on_its_own_named_thread_and_the_handle_ends_with_it() {
        let caller = std::thread::current().id();
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = spawn("audit-test", runtime().unwrap(), async move {
            let me = std::thread::current();
            tx.send((me.id(), me.name().map(str::to_owned), policy())).unwrap();
        })
        .unwrap();
        handle.await.unwrap();
        let (id, name, policy) = rx.recv().unwrap();
        assert_ne!(id, caller);
        assert_eq!(name.as_deref(), Some("audit-test"));
        #[cfg(target_os = "linux")]
        assert_eq!(policy, libc::SCHED_BATCH);
        let _ = policy;
    }

    #[tokio::test]
    async fn a_panicking_task_still_ends_the_handle() {
        let handle = spawn("audit-test-panic", runtime().unwrap(), async { panic!("writer bug") }).unwrap();
        handle.await.unwrap();
    }

    fn policy() -> i32 {
        #[cfg(target_os = "linux")]
        // SAFETY: querying the calling thread's policy has no preconditions.
        return unsafe { libc::sched_getscheduler(0) };
        #[cfg(not(target_os = "linux"))]
        0
    }
}
