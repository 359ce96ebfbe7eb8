//! The control socket: a Unix stream socket, one thread per client (a
//! bounded number), each request handed to the control loop over a channel
//! so that every state change happens on the control-plane thread.

use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use super::proto::{parse_request, Reply, Request, MAX_REQUEST};

/// Clients served at once; more are refused with an error line.
pub const MAX_CLIENTS: usize = 32;
/// A client that sends no complete line for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client waits for the control loop's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// A request waiting for the control loop, with where its answer goes.
pub struct Pending {
    pub request: Request,
    reply: SyncSender<Reply>,
}

impl Pending {
    pub fn answer(self, reply: Reply) {
        let _ = self.reply.send(reply);
    }
}

/// Who may use the socket besides root and the daemon's own user.
#[derive(Clone, Copy, Debug)]
pub struct Access {
    pub group: Option<u32>,
}

/// The listening socket and its accept thread.
pub struct CtlServer {
    path: PathBuf,
    requests: Receiver<Pending>,
    stop: Arc<AtomicBool>,
}

impl CtlServer {
    /// Binds `path` (replacing a stale socket), sets `mode` and `group`.
    pub fn bind(path: &Path, mode: u32, access: Access) -> std::io::Result<CtlServer> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        match fs::remove_file(path) {
            Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let listener = UnixListener::bind(path)?;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
        if let Some(gid) = access.group {
            std::os::unix::fs::chown(path, None, Some(gid))?;
        }
        let (tx, rx) = sync_channel(256);
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        std::thread::Builder::new()
            .name("esprit-ctl".into())
            .spawn(move || accept_loop(listener, tx, access, stop2))?;
        Ok(CtlServer {
            path: path.to_path_buf(),
            requests: rx,
            stop,
        })
    }

    /// The next request waiting for the control loop, if any.
    pub fn next(&self) -> Option<Pending> {
        self.requests.try_recv().ok()
    }
}

impl Drop for CtlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept thread so it sees `stop`, then remove the socket.
        let _ = UnixStream::connect(&self.path);
        let _ = fs::remove_file(&self.path);
    }
}

fn accept_loop(
    listener: UnixListener,
    tx: SyncSender<Pending>,
    access: Access,
    stop: Arc<AtomicBool>,
) {
    let clients = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let Ok(mut stream) = conn else { continue };
        if let Err(why) = permitted(&stream, access) {
            let _ = writeln!(stream, "{}", Reply::error(why).to_line());
            continue;
        }
        if clients.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
            clients.fetch_sub(1, Ordering::SeqCst);
            let _ = writeln!(
                stream,
                "{}",
                Reply::error("too many control clients").to_line()
            );
            continue;
        }
        let (tx, clients) = (tx.clone(), clients.clone());
        let spawned = std::thread::Builder::new()
            .name("esprit-ctl-client".into())
            .spawn(move || {
                serve(stream, &tx);
                clients.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            tracing::warn!("could not start a control client thread");
        }
    }
}

/// SO_PEERCRED: root, our own user, or a member of the configured group.
fn permitted(stream: &UnixStream, access: Access) -> Result<(), String> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err("cannot identify the peer (SO_PEERCRED)".into());
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if cred.uid == 0 || cred.uid == me || access.group.is_some_and(|g| g == cred.gid) {
        Ok(())
    } else {
        Err(format!("uid {} may not use the control socket", cred.uid))
    }
}

/// Reads request lines (bounded in size and time) and writes the answers.
fn serve(stream: UnixStream, tx: &SyncSender<Pending>) {
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IDLE_TIMEOUT));
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut out = write_half;
    let mut reader = BufReader::new(stream.take(u64::MAX));
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        // Read at most MAX_REQUEST + 1 bytes of one line.
        reader.get_mut().set_limit(MAX_REQUEST as u64 + 1);
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) if line.len() > MAX_REQUEST => {
                let _ = writeln!(
                    out,
                    "{}",
                    Reply::error(format!("request longer than {MAX_REQUEST} bytes")).to_line()
                );
                return;
            }
            Ok(_) if line.last() != Some(&b'\n') => return, // EOF inside a line
            Ok(_) => {}
            Err(_) => return, // idle timeout or reset
        }
        let reply =
            match std::str::from_utf8(&line).map_err(|_| "bad request: not UTF-8".to_string()) {
                Err(e) => Reply::error(e),
                Ok(text) if text.trim().is_empty() => continue,
                Ok(text) => match parse_request(text) {
                    Err(e) => Reply::error(e),
                    Ok(request) => ask(tx, request),
                },
            };
        if writeln!(out, "{}", reply.to_line()).is_err() {
            return;
        }
    }
}

fn ask(tx: &SyncSender<Pending>, request: Request) -> Reply {
    let (reply_tx, reply_rx) = sync_channel(1);
    let pending = Pending {
        request,
        reply: reply_tx,
    };
    if tx.try_send(pending).is_err() {
        return Reply::error("the daemon is busy: try again");
    }
    reply_rx
        .recv_timeout(ANSWER_TIMEOUT)
        .unwrap_or_else(|_| Reply::error("the daemon did not answer in time"))
}
