//! Where netlink requests run.
//!
//! rtnetlink is async, but this module's callers are synchronous and some of them already run
//! inside a tokio runtime, where `block_on` panics. So requests never run on the caller's thread:
//! - requests in the daemon's own namespace go to one long-lived worker thread with its own
//!   single-threaded runtime and one netlink socket, fed by a channel (no thread or socket per
//!   call);
//! - requests in another namespace run on a short-lived thread that enters the namespace first
//!   and opens its socket there: a netlink socket acts on the namespace it was created in, and
//!   `setns` only moves the calling thread.
//!
//! The caller blocks until the answer comes back, as it did while `ip` ran.

use std::{
    future::Future,
    os::unix::fs::MetadataExt as _,
    panic::AssertUnwindSafe,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{Mutex, PoisonError, mpsc},
    thread,
};

use futures::FutureExt as _;
use rtnetlink::Handle;
use tokio::{runtime, sync::mpsc as tokio_mpsc, task::JoinHandle};

use super::NetlinkError;

/// A request with its result type erased: it sends its result to whoever waits for it.
type Task = Box<dyn FnOnce(Handle) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// Runs `job` in the calling thread's network namespace and waits for its result.
pub(super) fn here<T, F, Fut>(job: F) -> Result<T, NetlinkError>
where
    T: Send + 'static,
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, NetlinkError>> + 'static,
{
    let (task, result) = task(job);
    let netns = NetnsId::of_this_thread()?;
    let elsewhere = {
        let mut worker = WORKER.lock().unwrap_or_else(PoisonError::into_inner);
        if worker.as_ref().is_none_or(Worker::stopped) && netns == NetnsId::of_process()? {
            *worker = Some(Worker::start(netns)?);
        }
        match worker.as_ref() {
            Some(w) if w.netns == netns => {
                w.submit(task)?;
                None
            }
            _ => Some(task),
        }
    };
    // The caller has entered another namespace (netns::enter): a new thread starts in the
    // namespace of the thread that spawns it, so no setns is needed.
    if let Some(task) = elsewhere {
        on_new_thread(None, task)?;
    }
    wait(result)
}

/// Runs `job` in the network namespace at `netns` and waits for its result.
pub(super) fn in_netns<T, F, Fut>(netns: &Path, job: F) -> Result<T, NetlinkError>
where
    T: Send + 'static,
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, NetlinkError>> + 'static,
{
    let (task, result) = task(job);
    on_new_thread(Some(netns.to_path_buf()), task)?;
    wait(result)
}

type Reply<T> = mpsc::Receiver<Result<T, NetlinkError>>;

fn task<T, F, Fut>(job: F) -> (Task, Reply<T>)
where
    T: Send + 'static,
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, NetlinkError>> + 'static,
{
    let (send, receive) = mpsc::sync_channel(1);
    let task: Task = Box::new(move |handle| {
        Box::pin(async move {
            // The receiver only goes away with a caller that no longer waits.
            let _ = send.send(job(handle).await);
        })
    });
    (task, receive)
}

fn wait<T>(result: Reply<T>) -> Result<T, NetlinkError> {
    result.recv().unwrap_or_else(|_| {
        Err(NetlinkError::io(
            "finish a netlink request",
            std::io::Error::other("the netlink thread stopped before answering"),
        ))
    })
}

/// Identity of a network namespace (its nsfs inode), cheap enough to take on every call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct NetnsId {
    dev: u64,
    ino: u64,
}

impl NetnsId {
    fn of(path: &str) -> Result<Self, NetlinkError> {
        let meta =
            std::fs::metadata(path).map_err(|e| NetlinkError::io(format!("read {path}"), e))?;
        Ok(Self {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    fn of_this_thread() -> Result<Self, NetlinkError> {
        Self::of("/proc/thread-self/ns/net")
    }

    /// The namespace of the process's main thread: the daemon's own.
    fn of_process() -> Result<Self, NetlinkError> {
        Self::of("/proc/self/ns/net")
    }
}

/// The long-lived thread serving the daemon's own namespace.
struct Worker {
    tasks: tokio_mpsc::UnboundedSender<Task>,
    netns: NetnsId,
}

static WORKER: Mutex<Option<Worker>> = Mutex::new(None);

impl Worker {
    /// Starts the worker from the calling thread, whose namespace it inherits (`netns`), and
    /// waits until its socket is open so that failing to open one is the caller's error.
    fn start(netns: NetnsId) -> Result<Self, NetlinkError> {
        let (tasks, queue) = tokio_mpsc::unbounded_channel();
        let (ready, started) = mpsc::sync_channel(1);
        thread::Builder::new()
            .name("netd-netlink".into())
            .spawn(move || serve(queue, ready))
            .map_err(|e| NetlinkError::io("start the netlink thread", e))?;
        started.recv().unwrap_or_else(|_| {
            Err(NetlinkError::io(
                "start the netlink thread",
                std::io::Error::other("it stopped while starting"),
            ))
        })?;
        Ok(Self { tasks, netns })
    }

    fn stopped(&self) -> bool {
        self.tasks.is_closed()
    }

    fn submit(&self, task: Task) -> Result<(), NetlinkError> {
        self.tasks.send(task).map_err(|_| {
            NetlinkError::io(
                "send a netlink request",
                std::io::Error::other("the netlink thread has stopped"),
            )
        })
    }
}

/// The worker's body: one socket, requests one after another.
fn serve(
    mut queue: tokio_mpsc::UnboundedReceiver<Task>,
    ready: mpsc::SyncSender<Result<(), NetlinkError>>,
) {
    let runtime = match new_runtime() {
        Ok(r) => r,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    runtime.block_on(async move {
        let (mut connection, handle) = match connect() {
            Ok(c) => c,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        loop {
            tokio::select! {
                task = queue.recv() => match task {
                    // A panicking request must not take the worker down with it: its caller
                    // sees the reply channel close, everyone else keeps the worker.
                    Some(task) => {
                        if AssertUnwindSafe(task(handle.clone())).catch_unwind().await.is_err() {
                            tracing::error!("a netlink request panicked");
                        }
                    }
                    None => break,
                },
                // The socket failed: stop, so that the next request starts a fresh worker
                // instead of queueing behind a dead connection.
                _ = &mut connection => {
                    tracing::warn!("the netlink connection closed; the next request reopens it");
                    break;
                }
            }
        }
    });
}

/// Runs `task` on a thread of its own, in `netns` if given, else in the calling thread's.
fn on_new_thread(netns: Option<PathBuf>, task: Task) -> Result<(), NetlinkError> {
    let thread = thread::Builder::new()
        .name("netd-netlink-ns".into())
        .spawn(move || -> Result<(), NetlinkError> {
            // Held until the thread ends; the thread is never reused.
            let _inside = netns
                .as_deref()
                .map(|path| {
                    crate::netns::enter(path).map_err(|e| NetlinkError::from_netns(path, e))
                })
                .transpose()?;
            let runtime = new_runtime()?;
            runtime.block_on(async move {
                let (_connection, handle) = connect()?;
                task(handle).await;
                Ok(())
            })
        })
        .map_err(|e| NetlinkError::io("start a netlink thread", e))?;
    thread.join().unwrap_or_else(|_| {
        Err(NetlinkError::io(
            "finish a netlink request",
            std::io::Error::other("the netlink thread panicked"),
        ))
    })
}

fn new_runtime() -> Result<runtime::Runtime, NetlinkError> {
    runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| NetlinkError::io("start a runtime for netlink", e))
}

/// Opens a netlink socket in the current thread's namespace. Must run inside the runtime: the
/// socket registers with its reactor. The connection task drives the socket; it ends with the
/// runtime or when the socket fails.
fn connect() -> Result<(JoinHandle<()>, Handle), NetlinkError> {
    let (connection, handle, _unsolicited) =
        rtnetlink::new_connection().map_err(|e| NetlinkError::io("open a netlink socket", e))?;
    Ok((tokio::spawn(connection), handle))
}
