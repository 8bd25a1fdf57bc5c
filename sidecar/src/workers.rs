//! Thread per core: client connections are served by worker threads, each running a
//! single-threaded runtime with its own event loop, as nginx's worker processes or Envoy's worker
//! threads do. A connection stays on the worker it was handed to, with its app connections and
//! their idle pool, so no readiness event or pooled socket crosses between cores.
//!
//! The listeners accept on the caller's runtime and hand each connection to the next worker in
//! turn.

use std::{
    cell::Cell,
    future::Future,
    io,
    sync::atomic::{AtomicUsize, Ordering},
    thread,
};

use tokio::runtime::{Builder, Handle};
use tokio_util::sync::CancellationToken;

thread_local! {
    /// The index of the worker this thread is (0 on any other thread).
    static CURRENT: Cell<usize> = const { Cell::new(0) };
}

/// The worker threads.
#[derive(Debug)]
pub struct Workers {
    handles: Vec<Handle>,
    next: AtomicUsize,
    /// Cancelled to let the worker threads end.
    done: CancellationToken,
}

impl Workers {
    /// Starts `count` worker threads (at least one).
    pub fn start(count: usize) -> io::Result<Self> {
        let done = CancellationToken::new();
        let mut handles = Vec::new();
        for index in 0..count.max(1) {
            let runtime = Builder::new_current_thread().enable_all().build()?;
            handles.push(runtime.handle().clone());
            let done = done.clone();
            thread::Builder::new()
                .name(format!("snug-worker-{index}"))
                .spawn(move || {
                    CURRENT.with(|current| current.set(index));
                    runtime.block_on(done.cancelled());
                })?;
        }
        Ok(Self {
            handles,
            next: AtomicUsize::new(0),
            done,
        })
    }

    /// How many workers there are.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Whether there are none (never: [`Workers::start`] starts at least one).
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// The next worker in turn.
    pub fn next(&self) -> &Handle {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        &self.handles[index]
    }

    /// Runs `task` on the next worker.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.next().spawn(task);
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.done.cancel();
    }
}

/// The index of the worker running the caller (0 outside the workers).
pub fn current() -> usize {
    CURRENT.with(Cell::get)
}
