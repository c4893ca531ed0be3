//! The node crate's errors: one enum per layer. [`ConfigError`] for loading
//! and checking `config.toml`, [`InitError`] for making a node directory,
//! [`NodeError`] for starting and stopping a node, [`ControlError`] for the
//! client side of the control socket and [`OpError`] for client operations
//! (put, get, check). Messages are sentences a user can act on: they name
//! the file, address or node concerned.

use std::net::SocketAddr;
use std::path::PathBuf;

use grapevine_crypto::{AdmissionError, GridId, IdentityError, NodeId, RecordError};
use grapevine_membership::MembershipError;
use grapevine_storage::client::ClientError;
use grapevine_storage::StoreError;

/// `config.toml` could not be read or is invalid. Nothing was started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for the schema; `key` is empty or
    /// `" key `name`:"`.
    #[error("{path}:{line}:{key} {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The line of the error (1-based; 0 if unknown).
        line: usize,
        /// The key on that line, formatted for the message.
        key: String,
        /// The parser's message.
        message: String,
    },
    /// The file parses but a setting is unusable.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
}

/// A node directory could not be created. What `init` made is removed
/// again (the directories it created, or the files it wrote into one that
/// was there); never an existing node's identity overwritten.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// The directory already holds a node. Nothing was written.
    #[error("{0} already holds a node (identity.key exists)")]
    Exists(PathBuf),
    /// The configuration asked for is one a node would refuse to run with
    /// (`message` is [`ConfigError::Invalid`]'s, from the same check).
    /// Nothing was written.
    #[error("not creating {dir}: {message}")]
    Config {
        /// The node directory.
        dir: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
    /// A file could not be written. What was made is removed.
    #[error("creating {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The identity could not be saved. What was made is removed.
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

/// A node could not start, or failed while stopping. On a start error every
/// part already started has been stopped again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The identity key could not be loaded.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The convergence secret is unreadable or malformed.
    #[error("{path}: {message}")]
    Secret {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The share store could not be opened.
    #[error("share store: {0}")]
    Store(#[from] StoreError),
    /// A socket could not be bound.
    #[error("binding {what} {addr}: {source}")]
    Bind {
        /// "UDP", "TCP", "metrics" or "control socket".
        what: &'static str,
        /// The address or path.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// A node is already running in the directory (it answers on this
    /// control socket); nothing was started.
    #[error("a node is already running here: it answers on {0}")]
    AlreadyRunning(PathBuf),
    /// The node's admission certificate does not admit it now.
    #[error("this node ({node}) cannot join grid {grid}: {source}")]
    NotAdmitted {
        /// This node.
        node: NodeId,
        /// The configured grid.
        grid: GridId,
        /// Why not.
        source: AdmissionError,
    },
    /// The node's own record could not be made.
    #[error("own record: {0}")]
    Record(#[from] RecordError),
    /// The membership task failed or has stopped.
    #[error(transparent)]
    Membership(#[from] MembershipError),
    /// Other local I/O (a runtime, a thread, file permissions).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

impl NodeError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NodeError {
        let what = what.into();
        move |source| NodeError::Io { what, source }
    }

    pub(crate) fn bind(
        what: &'static str,
        addr: SocketAddr,
    ) -> impl FnOnce(std::io::Error) -> Self {
        move |source| NodeError::Bind {
            what,
            addr: addr.to_string(),
            source,
        }
    }
}

/// A control request failed. The node (if any) is unchanged: control
/// requests only read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// Nothing listens on the node directory's control socket.
    #[error("no node running in {dir} (could not connect to {socket}: {source})")]
    NotRunning {
        /// The node directory.
        dir: PathBuf,
        /// Its control socket.
        socket: PathBuf,
        /// Why the connection failed.
        source: std::io::Error,
    },
    /// The node took the connection but did not answer in time (it is
    /// still starting, or hung). Nothing was changed.
    #[error(
        "the node in {dir} did not answer within {secs} s: it may still be starting, or be hung \
         (set GRAPEVINE_CONTROL_TIMEOUT_SECS to wait longer)",
        secs = .waited.as_secs_f64()
    )]
    NoAnswer {
        /// The node directory.
        dir: PathBuf,
        /// How long the client waited.
        waited: std::time::Duration,
    },
    /// The connection failed mid-request.
    #[error("control connection: {0}")]
    Io(#[from] std::io::Error),
    /// The node closed the connection without answering.
    #[error("node closed the control connection")]
    Closed,
    /// The node answered with an error.
    #[error("node refused the request: {0}")]
    Refused(String),
    /// The node's answer does not parse.
    #[error("node answered out of protocol: {0}")]
    BadReply(String),
    /// A request line was longer than the protocol allows (server side).
    #[error("control request longer than {0} bytes")]
    TooLong(usize),
    /// The node's membership task has stopped (server side).
    #[error(transparent)]
    Membership(#[from] MembershipError),
}

/// A client operation (put, get, check) failed. A failed put may leave
/// shares on servers (they are unreferenced); a failed get leaves no output
/// file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpError {
    /// The node could not be asked for its view of the grid.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The node's directory (identity, secret, configuration) is unusable.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The node's membership task has stopped.
    #[error(transparent)]
    Membership(#[from] MembershipError),
    /// A member's record as relayed by the node does not decode.
    #[error("member {id}: {message}")]
    BadMember {
        /// The member.
        id: String,
        /// What is wrong.
        message: String,
    },
    /// The storage operation failed.
    #[error(transparent)]
    Storage(#[from] ClientError),
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A directory was given where a file is needed; nothing was sent or
    /// downloaded.
    #[error("{0} is a directory: give a file")]
    IsDirectory(PathBuf),
    /// Standard input could not be spooled to a temporary file.
    #[error("spooling the input to a temporary file in {dir} (set TMPDIR to use another directory): {source}")]
    Spool {
        /// The temporary directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A download failed after some of its bytes went to a target that
    /// cannot take them back (standard output, a device, a FIFO).
    #[error("the output to {target} is incomplete: {written} bytes were written before the download failed: {source}")]
    Incomplete {
        /// The target.
        target: String,
        /// Bytes written to it.
        written: u64,
        /// The failure.
        source: Box<OpError>,
    },
    /// The download's target refused a write.
    #[error("writing to {target} failed: {source}")]
    Write {
        /// The target.
        target: String,
        /// Why.
        source: std::io::Error,
    },
    /// Local I/O on a stream (standard output).
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
}
