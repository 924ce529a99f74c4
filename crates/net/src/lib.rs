//! The accept loop that every Strata listener shares (Kafka, MQTT over TCP), after
//! mini-redis's `Listener`:
//!
//! - a cap on open connections, one semaphore permit per connection; a client beyond the cap
//!   is accepted and closed at once, so it sees a clean refusal instead of a hung handshake;
//! - accept errors never end the listener: running out of descriptors is answered with the
//!   spare-descriptor trick (close the spare, accept, close, reopen), other errors with a
//!   back-off, and each burst is logged once;
//! - graceful drain: [`Drain`] holds the cancellation token that stops the loops and tells
//!   connections to finish, and the tracker of connection tasks that shutdown waits for;
//! - [`raise_nofile_limit`], called once at start-up.

use std::fs::File;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long graceful shutdown lets open connections finish, unless configured.
pub const DEFAULT_DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// Descriptors kept for what is not a connection (segments, indexes, sockets to MariaDB or
/// S3) when comparing the descriptor limit against the connection caps.
pub const DESCRIPTOR_RESERVE: u64 = 1024;

const BACKOFF_MIN: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// A burst of refusals or accept errors is logged once per this interval.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Stops the accept loops and tracks the connection tasks that shutdown waits for.
#[derive(Debug, Clone, Default)]
pub struct Drain {
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Drain {
    /// A drain with nothing yet to wait for.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancelled when shutdown begins: accept loops stop, connections finish the request in
    /// hand and close.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Runs `task` as a tracked connection: shutdown waits for it.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(task);
    }

    /// `future`, tracked: shutdown waits for it wherever it runs (a task spawned by another
    /// server, such as a WebSocket session after its upgrade).
    pub fn track<F: Future>(&self, future: F) -> tokio_util::task::task_tracker::TrackedFuture<F> {
        self.tracker.track_future(future)
    }

    /// Tracked tasks still running.
    pub fn open(&self) -> usize {
        self.tracker.len()
    }

    /// Begins shutdown and waits up to `deadline` for every tracked task. Returns how many
    /// were still running when the deadline passed (0 when all finished).
    pub async fn drain(&self, deadline: Duration) -> usize {
        self.token.cancel();
        self.tracker.close();
        match tokio::time::timeout(deadline, self.tracker.wait()).await {
            Ok(()) => 0,
            Err(_) => self.tracker.len(),
        }
    }
}

/// Accepts connections on `listener` until `drain` is cancelled, running `handle` for each in
/// a tracked task while fewer than `max_connections` are open. `name` labels the log lines.
pub async fn serve<H, F>(
    listener: TcpListener,
    name: &'static str,
    max_connections: usize,
    drain: Drain,
    handle: H,
) where
    H: Fn(TcpStream, SocketAddr) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(max_connections));
    let mut spare = Spare::new();
    let mut refused = Burst::new();
    let mut failed = Burst::new();
    let mut backoff = BACKOFF_MIN;
    loop {
        let accepted = tokio::select! {
            _ = drain.token.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = BACKOFF_MIN;
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    if let Some(n) = refused.note() {
                        tracing::warn!(
                            listener = name,
                            max_connections,
                            refused = n,
                            "connection limit reached: closing new connections until some end"
                        );
                    }
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let task = handle(stream, peer);
                drain.spawn(async move {
                    task.await;
                    drop(permit);
                });
            }
            Err(e) if is_per_connection(&e) => {}
            Err(e) if is_out_of_descriptors(&e) => {
                if let Some(n) = failed.note() {
                    tracing::warn!(
                        listener = name,
                        error = %e,
                        refused = n,
                        "out of file descriptors: closing new connections (raise `ulimit -n` or lower the connection caps)"
                    );
                }
                if !spare.refuse_one(&listener) {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
            Err(e) => {
                if let Some(n) = failed.note() {
                    tracing::warn!(listener = name, error = %e, failures = n, "accept failed; backing off");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// Errors that concern one connection that vanished before accept, not the listener.
fn is_per_connection(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::Interrupted
    )
}

fn is_out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// One descriptor held back so that, when the process runs out, a pending connection can
/// still be accepted and closed (the client sees the refusal instead of waiting in the
/// backlog, and the listener does not spin on an accept that keeps failing).
struct Spare(Option<File>);

impl Spare {
    fn new() -> Self {
        Spare(File::open("/dev/null").ok())
    }

    /// Frees the spare, accepts and closes one pending connection, takes the spare back.
    /// False when there was no spare or nothing to accept.
    fn refuse_one(&mut self, listener: &TcpListener) -> bool {
        if self.0.take().is_none() {
            self.0 = File::open("/dev/null").ok();
            return false;
        }
        let refused = std::os::fd::AsRawFd::as_raw_fd(listener);
        // SAFETY: accept(2) on the listener's descriptor with null address arguments; the
        // returned descriptor, if any, is ours and closed at once.
        let fd = unsafe { libc::accept(refused, std::ptr::null_mut(), std::ptr::null_mut()) };
        if fd >= 0 {
            // SAFETY: `fd` was just returned by accept(2) and is owned by nothing else.
            unsafe { libc::close(fd) };
        }
        self.0 = File::open("/dev/null").ok();
        fd >= 0
    }
}

/// Counts events and says when to log them: the first of a burst, then once per interval.
struct Burst {
    last: Option<Instant>,
    since: u64,
}

impl Burst {
    fn new() -> Self {
        Burst {
            last: None,
            since: 0,
        }
    }

    fn note(&mut self) -> Option<u64> {
        self.since += 1;
        let now = Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.since))
    }
}

/// The process's descriptor limit after [`raise_nofile_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimit {
    /// The soft limit in force.
    pub soft: u64,
    /// The hard limit, the most the soft limit can be raised to without privileges.
    pub hard: u64,
    /// The soft limit before it was raised.
    pub was: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (as Kafka's and Mosquitto's service
/// units ask operators to do by hand) and returns the figures.
pub fn raise_nofile_limit() -> std::io::Result<NofileLimit> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let was = rl.rlim_cur;
    if rl.rlim_cur < rl.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: rl.rlim_max,
            rlim_max: rl.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        rl = raised;
    }
    Ok(NofileLimit {
        soft: rl.rlim_cur,
        hard: rl.rlim_max,
        was,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn echo_server(max: usize) -> (SocketAddr, Drain) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let drain = Drain::new();
        let d = drain.clone();
        tokio::spawn(serve(
            listener,
            "test",
            max,
            drain.clone(),
            move |mut s, _| {
                let token = d.token().clone();
                async move {
                    let mut b = [0u8; 1];
                    loop {
                        tokio::select! {
                            _ = token.cancelled() => return,
                            r = s.read(&mut b) => match r {
                                Ok(1) => { let _ = s.write_all(&b).await; }
                                _ => return,
                            },
                        }
                    }
                }
            },
        ));
        (addr, drain)
    }

    async fn echoes(s: &mut TcpStream) -> bool {
        if s.write_all(b"x").await.is_err() {
            return false;
        }
        let mut b = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(2), s.read(&mut b)).await,
            Ok(Ok(1))
        )
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_are_closed_and_the_listener_goes_on() {
        let (addr, _drain) = echo_server(2).await;
        let mut a = TcpStream::connect(addr).await.unwrap();
        let mut b = TcpStream::connect(addr).await.unwrap();
        assert!(echoes(&mut a).await && echoes(&mut b).await);
        let mut c = TcpStream::connect(addr).await.unwrap();
        assert!(!echoes(&mut c).await, "a third connection must be refused");
        drop(a);
        // The permit comes back when the connection's task ends.
        let mut ok = false;
        for _ in 0..50 {
            let mut d = TcpStream::connect(addr).await.unwrap();
            if echoes(&mut d).await {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(ok, "a slot freed by a closed connection is not reused");
    }

    #[tokio::test]
    async fn drain_stops_accepting_and_waits_for_connections() {
        let (addr, drain) = echo_server(10).await;
        let mut a = TcpStream::connect(addr).await.unwrap();
        assert!(echoes(&mut a).await);
        assert_eq!(drain.open(), 1);
        assert_eq!(drain.drain(Duration::from_secs(5)).await, 0);
        let refused = match TcpStream::connect(addr).await {
            Err(_) => true,
            Ok(mut s) => !echoes(&mut s).await,
        };
        assert!(refused, "a drained listener still serves new connections");
    }

    #[test]
    fn the_soft_descriptor_limit_is_raised_to_the_hard_limit() {
        let l = raise_nofile_limit().unwrap();
        assert_eq!(l.soft, l.hard);
        assert!(l.soft >= l.was);
    }
}
