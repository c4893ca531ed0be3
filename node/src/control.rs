//! The control protocol: how `grapevine members`, `status`, `whoami` and the
//! client commands ask a running node what it knows.
//!
//! A Unix socket in the node directory (`control.sock`, mode 0600, so only
//! the node's owner may ask). One JSON object per line each way: the
//! request `{"cmd":"whoami"|"members"|"status"|"repair"}`, the reply a
//! [`Whoami`], a list of [`MemberRow`]s, a [`StatusReport`], a
//! [`RepairStatus`](crate::repair_stats::RepairStatus), or
//! `{"error":"..."}`. A connection may carry any number of requests.
//! Request lines longer than [`MAX_REQUEST`] end the connection, so a client
//! cannot make the node buffer without bound. The server only reads
//! [`NodeState`]; it never changes the node.
//!
//! The socket is bound early in a node's start, before the node answers on
//! it, so a client waits for an answer at most [`ask_timeout`] (10 s unless
//! `GRAPEVINE_CONTROL_TIMEOUT_SECS` says otherwise), then gives up with
//! [`ControlError::NoAnswer`] rather than hang on a node still starting, or
//! hung.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinSet;

use crate::dir::NodeDir;
use crate::error::{ControlError, NodeError};
use crate::state::{MemberRow, NodeState, StatusReport, Whoami};

/// Longest request line accepted, bytes.
pub const MAX_REQUEST: usize = 4096;

/// A control request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    /// This node's id and record.
    Whoami,
    /// Every member as this node sees it.
    Members,
    /// This node's figures.
    Status,
    /// What the repair job has done, with its last errors.
    Repair,
}

/// Bind the control socket at `path`, mode 0600, replacing a stale one (a
/// socket file nobody answers on, left by a node that crashed).
///
/// # Errors
/// [`NodeError::AlreadyRunning`] if a node answers on `path`;
/// [`NodeError::Bind`] if it cannot be bound or made private.
pub async fn bind(path: &Path) -> Result<UnixListener, NodeError> {
    let bind_err = |source| NodeError::Bind {
        what: "control socket",
        addr: path.display().to_string(),
        source,
    };
    if UnixStream::connect(path).await.is_ok() {
        return Err(NodeError::AlreadyRunning(path.to_path_buf()));
    }
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path).map_err(bind_err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_err)?;
    }
    Ok(l)
}

/// Remove `dir`'s control socket if nobody answers on it (a node that
/// crashed left it; a start that failed must not leave one behind).
pub async fn remove_stale(dir: &NodeDir) {
    let path = dir.control_path();
    if path.exists() && UnixStream::connect(&path).await.is_err() {
        let _ = std::fs::remove_file(&path);
    }
}

/// Answer control connections on `listener` until the task is dropped;
/// connections end with it.
pub async fn serve(listener: UnixListener, state: Arc<NodeState>) {
    let mut conns = JoinSet::new();
    let mut backoff = grapevine_storage::server::AcceptBackoff::default();
    loop {
        while conns.try_join_next().is_some() {}
        match listener.accept().await {
            Ok((stream, _)) => {
                backoff.reset();
                let state = state.clone();
                conns.spawn(async move {
                    if let Err(e) = serve_conn(stream, &state).await {
                        tracing::debug!("control connection: {e}");
                    }
                });
            }
            Err(e) => {
                // Out of file descriptors, say: wait and retry, never spin
                // (the storage listener's policy).
                let Some(pause) = backoff.on_error(&e) else {
                    tracing::error!("control socket failed for good: {e}");
                    return;
                };
                tracing::warn!("control socket accept: {e}; retrying in {pause:?}");
                tokio::time::sleep(pause).await;
            }
        }
    }
}

async fn serve_conn(stream: UnixStream, state: &NodeState) -> Result<(), ControlError> {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    loop {
        let mut buf = Vec::new();
        let n = (&mut r)
            .take(MAX_REQUEST as u64 + 1)
            .read_until(b'\n', &mut buf)
            .await?;
        if n == 0 {
            return Ok(());
        }
        if n > MAX_REQUEST {
            return Err(ControlError::TooLong(MAX_REQUEST));
        }
        let reply = match parse_request(&buf) {
            Ok(req) => respond(state, req).await?,
            Err(e) => error_line(&e),
        };
        w.write_all(reply.as_bytes()).await?;
        w.write_all(b"\n").await?;
    }
}

/// Parse one request line (without or with its newline).
///
/// # Errors
/// The parser's message, for the `{"error":...}` reply.
pub fn parse_request(line: &[u8]) -> Result<Request, String> {
    let line = String::from_utf8_lossy(line);
    serde_json::from_str(line.trim_end()).map_err(|e| e.to_string())
}

fn error_line(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

/// The reply line to `req`.
///
/// # Errors
/// [`ControlError::Membership`] if the node's membership has stopped.
pub async fn respond(state: &NodeState, req: Request) -> Result<String, ControlError> {
    let json = match req {
        Request::Whoami => serde_json::to_string(&state.whoami()),
        Request::Members => serde_json::to_string(&state.member_rows().await?),
        Request::Status => serde_json::to_string(&state.status().await?),
        Request::Repair => serde_json::to_string(&state.repair_stats().status()),
    };
    Ok(json.unwrap_or_else(|e| error_line(&e.to_string())))
}

/// How long [`ask`] waits for a node's answer unless
/// [`ASK_TIMEOUT_VAR`] says otherwise.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(10);

/// The environment variable that sets how long [`ask`] waits, in seconds
/// (`0.5` and the like too).
pub const ASK_TIMEOUT_VAR: &str = "GRAPEVINE_CONTROL_TIMEOUT_SECS";

/// How long [`ask`] waits: [`ASK_TIMEOUT_VAR`] if it is set to a number of
/// seconds above 0, else [`ASK_TIMEOUT`].
pub fn ask_timeout() -> Duration {
    timeout_of(std::env::var(ASK_TIMEOUT_VAR).ok().as_deref())
}

fn timeout_of(var: Option<&str>) -> Duration {
    var.and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .unwrap_or(ASK_TIMEOUT)
}

/// Send one request to the node running in `dir` and return its reply
/// line, waiting at most [`ask_timeout`].
///
/// # Errors
/// As [`ask_within`].
pub async fn ask(dir: &NodeDir, req: Request) -> Result<String, ControlError> {
    ask_within(dir, req, ask_timeout()).await
}

/// Send one request to the node running in `dir` and return its reply
/// line, waiting at most `timeout` for it.
///
/// # Errors
/// [`ControlError::NotRunning`] if no node listens there;
/// [`ControlError::NoAnswer`] if it does not answer in time;
/// [`ControlError::Refused`] if it answers with an error.
pub async fn ask_within(
    dir: &NodeDir,
    req: Request,
    timeout: Duration,
) -> Result<String, ControlError> {
    tokio::time::timeout(timeout, exchange(dir, req))
        .await
        .map_err(|_| ControlError::NoAnswer {
            dir: dir.path().to_path_buf(),
            waited: timeout,
        })?
}

async fn exchange(dir: &NodeDir, req: Request) -> Result<String, ControlError> {
    let socket = dir.control_path();
    let stream = UnixStream::connect(&socket)
        .await
        .map_err(|source| ControlError::NotRunning {
            dir: dir.path().to_path_buf(),
            socket: socket.clone(),
            source,
        })?;
    let (r, mut w) = stream.into_split();
    let mut line =
        serde_json::to_string(&req).map_err(|e| ControlError::BadReply(e.to_string()))?;
    line.push('\n');
    w.write_all(line.as_bytes()).await?;
    let mut lines = BufReader::new(r).lines();
    let reply = lines.next_line().await?.ok_or(ControlError::Closed)?;
    if reply.starts_with("{\"error\"") {
        return Err(ControlError::Refused(reply));
    }
    Ok(reply)
}

async fn ask_json<T: for<'de> Deserialize<'de>>(
    dir: &NodeDir,
    req: Request,
) -> Result<T, ControlError> {
    let line = ask(dir, req).await?;
    serde_json::from_str(&line).map_err(|e| ControlError::BadReply(format!("{e}: {line}")))
}

/// Members of the grid as the node in `dir` sees them.
///
/// # Errors
/// As [`ask`].
pub async fn members(dir: &NodeDir) -> Result<Vec<MemberRow>, ControlError> {
    ask_json(dir, Request::Members).await
}

/// The figures of the node in `dir`.
///
/// # Errors
/// As [`ask`].
pub async fn status(dir: &NodeDir) -> Result<StatusReport, ControlError> {
    ask_json(dir, Request::Status).await
}

/// What the repair job of the node in `dir` has done.
///
/// # Errors
/// As [`ask`].
pub async fn repair(dir: &NodeDir) -> Result<crate::repair_stats::RepairStatus, ControlError> {
    ask_json(dir, Request::Repair).await
}

/// The id and record of the node in `dir`.
///
/// # Errors
/// As [`ask`].
pub async fn whoami(dir: &NodeDir) -> Result<Whoami, ControlError> {
    ask_json(dir, Request::Whoami).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_tagged_json_lines() {
        assert_eq!(
            parse_request(b"{\"cmd\":\"status\"}\n"),
            Ok(Request::Status)
        );
        assert_eq!(
            serde_json::to_string(&Request::Members).unwrap(),
            "{\"cmd\":\"members\"}"
        );
        assert!(parse_request(b"{\"cmd\":\"shutdown\"}").is_err());
        assert!(parse_request(b"\xff\xfe").is_err());
    }

    /// A control socket that takes connections and never answers (a node
    /// still starting, or hung) is given up on at the deadline, with the
    /// node directory named.
    #[tokio::test(start_paused = true)]
    async fn a_node_that_does_not_answer_is_given_up_on() {
        let t = tempfile::tempdir().unwrap();
        let dir = NodeDir::new(t.path());
        let l = UnixListener::bind(dir.control_path()).unwrap();
        let mute = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                held.push(s);
            }
        });
        let e = ask_within(&dir, Request::Status, ASK_TIMEOUT)
            .await
            .unwrap_err();
        assert!(matches!(e, ControlError::NoAnswer { .. }), "{e}");
        let said = e.to_string();
        assert!(
            said.starts_with(&format!(
                "the node in {} did not answer within 10 s",
                t.path().display()
            )),
            "{said}"
        );
        mute.abort();
    }

    #[test]
    fn the_deadline_can_be_set_in_seconds() {
        assert_eq!(timeout_of(None), ASK_TIMEOUT);
        assert_eq!(timeout_of(Some("0.5")), Duration::from_millis(500));
        assert_eq!(timeout_of(Some(" 30 ")), Duration::from_secs(30));
        for bad in ["", "soon", "0", "-1", "nan", "1e300"] {
            assert_eq!(timeout_of(Some(bad)), ASK_TIMEOUT, "{bad}");
        }
    }

    #[tokio::test]
    async fn asking_a_directory_with_no_node_says_so() {
        let t = tempfile::tempdir().unwrap();
        let e = status(&NodeDir::new(t.path())).await.unwrap_err();
        assert!(e.to_string().starts_with("no node running in"), "{e}");
    }
}
