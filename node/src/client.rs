//! Client operations through a node's view of the grid: put, get, check.
//!
//! A [`Client`] knows who it is (the node's identity and record), which
//! storage servers there are (asked afresh for every operation, from the
//! node's membership) and holds a capped pool of sessions to them. It is
//! made either for a node running in this process ([`Client::of_node`],
//! sharing the node's pool, as the grid harness and the gateway do) or for
//! a node running as another process ([`Client::for_dir`], which asks the
//! node's control socket, as the CLI does). The CLI, the tests, the gateway
//! and the grid harness all call these same functions.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use grapevine_crypto::{Identity, SignedRecord};
use grapevine_storage::client::{
    self, CheckReport, ClientIdentity, DownloadReport, KeyMode, ServerRef, UploadReport,
    UploadRequest,
};
use grapevine_storage::{Cap, Params, SessionPool};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::control;
use crate::dir::NodeDir;
use crate::error::OpError;
use crate::state::{storage_servers, NodeState};

/// Where the client learns the grid's storage servers.
#[derive(Debug, Clone)]
enum View {
    /// A node in this process.
    Node(Arc<NodeState>),
    /// A node process, through its control socket.
    Control(NodeDir),
}

/// Puts, gets and checks files through one node's view of the grid.
#[derive(Debug, Clone)]
pub struct Client {
    pool: Arc<SessionPool>,
    view: View,
    convergence: [u8; 32],
}

/// How to store a file.
#[derive(Debug, Clone, Copy)]
pub struct PutOptions {
    /// Erasure coding and happiness.
    pub params: Params,
    /// A fresh random key instead of the convergent one.
    pub random_key: bool,
}

impl Default for PutOptions {
    /// 3-of-10, happy 7, convergent.
    fn default() -> Self {
        PutOptions {
            params: Params::default(),
            random_key: false,
        }
    }
}

/// A progress callback: bytes done so far.
pub type Progress<'a> = &'a (dyn Fn(u64) + Sync);

fn no_progress(_: u64) {}

impl Client {
    /// A client of the node running in this process whose state is `node`;
    /// it shares the node's session pool.
    pub fn of_node(node: Arc<NodeState>) -> Client {
        Client {
            pool: node.pool().clone(),
            convergence: node.convergence_secret(),
            view: View::Node(node),
        }
    }

    /// A client of the node running (as another process) in `dir`: its
    /// identity, secret and pool limits come from the directory, its record
    /// and view of the grid from the node's control socket.
    ///
    /// # Errors
    /// No node running there; an unreadable identity, secret or
    /// configuration.
    pub async fn for_dir(dir: &NodeDir) -> Result<Client, OpError> {
        let identity = Arc::new(dir.load_identity()?);
        let convergence = dir.convergence_secret()?;
        let config = dir.load_config().map_err(crate::error::NodeError::from)?;
        let w = control::whoami(dir).await?;
        let record = decode_record(&w.id, &w.record)?;
        let me = ClientIdentity {
            identity,
            record,
            session: config.session_config(),
        };
        Ok(Client {
            pool: Arc::new(SessionPool::new(me, config.pool_config())),
            view: View::Control(dir.clone()),
            convergence,
        })
    }

    /// Who the client's sessions authenticate as.
    pub fn identity(&self) -> &Arc<Identity> {
        &self.pool.identity().identity
    }

    /// The client's session pool.
    pub fn pool(&self) -> &Arc<SessionPool> {
        &self.pool
    }

    /// The storage servers the node sees now: itself if it serves storage,
    /// and every alive member that does.
    ///
    /// # Errors
    /// The node cannot be asked.
    pub async fn servers(&self) -> Result<Vec<ServerRef>, OpError> {
        match &self.view {
            View::Node(state) => Ok(state.storage_servers().await?),
            View::Control(dir) => {
                let own = self.pool.identity().record.clone();
                let mut records = vec![own];
                for m in control::members(dir).await? {
                    if m.state == "alive" && m.storage {
                        records.push(decode_record(&m.id, &m.record)?);
                    }
                }
                Ok(storage_servers(&records))
            }
        }
    }

    /// Store `size` bytes read from `input`. A convergent key needs the
    /// content twice: `hash_input` reads the same bytes again first (it is
    /// ignored for a random key).
    ///
    /// # Errors
    /// Fewer than `happy` servers took shares; session, codec and I/O errors.
    pub async fn put<R, H>(
        &self,
        input: R,
        hash_input: Option<H>,
        size: u64,
        opts: PutOptions,
        progress: Progress<'_>,
    ) -> Result<UploadReport, OpError>
    where
        R: AsyncRead + Unpin,
        H: AsyncRead + Unpin,
    {
        let servers = self.servers().await?;
        let mode = if opts.random_key {
            KeyMode::Random
        } else {
            KeyMode::Convergent(self.convergence)
        };
        let req = UploadRequest {
            params: opts.params,
            mode,
            size,
            input,
            hash_input: if opts.random_key { None } else { hash_input },
        };
        Ok(client::upload(&self.pool, &servers, req, progress).await?)
    }

    /// Store `data`.
    ///
    /// # Errors
    /// As [`Client::put`].
    pub async fn put_bytes(&self, data: &[u8], opts: PutOptions) -> Result<UploadReport, OpError> {
        self.put(data, Some(data), data.len() as u64, opts, &no_progress)
            .await
    }

    /// Store the file at `path`.
    ///
    /// # Errors
    /// An unreadable file; otherwise as [`Client::put`].
    pub async fn put_file(
        &self,
        path: &Path,
        opts: PutOptions,
        progress: Progress<'_>,
    ) -> Result<UploadReport, OpError> {
        let file_err = |source| OpError::File {
            path: path.to_path_buf(),
            source,
        };
        let size = tokio::fs::metadata(path).await.map_err(file_err)?.len();
        let input = tokio::fs::File::open(path).await.map_err(file_err)?;
        let hash_input = if opts.random_key {
            None
        } else {
            Some(tokio::fs::File::open(path).await.map_err(file_err)?)
        };
        self.put(input, hash_input, size, opts, progress).await
    }

    /// Fetch the file `cap` names into `out`, verifying every block.
    ///
    /// # Errors
    /// Fewer than k good shares; session and I/O errors. Bytes already
    /// written to `out` stay written.
    pub async fn get<W: AsyncWrite + Unpin>(
        &self,
        cap: &Cap,
        out: &mut W,
        progress: Progress<'_>,
    ) -> Result<DownloadReport, OpError> {
        let servers = self.servers().await?;
        Ok(client::download(&self.pool, &servers, cap, out, progress).await?)
    }

    /// Fetch bytes `start..start + len` of the file `cap` names into `out`
    /// (clamped to its end), reading only the segments they are in and
    /// verifying every block read.
    ///
    /// # Errors
    /// As [`Client::get`].
    pub async fn get_range<W: AsyncWrite + Unpin>(
        &self,
        cap: &Cap,
        start: u64,
        len: u64,
        out: &mut W,
    ) -> Result<DownloadReport, OpError> {
        let servers = self.servers().await?;
        Ok(client::download_range(&self.pool, &servers, cap, start, len, out).await?)
    }

    /// Fetch the file `cap` names into memory.
    ///
    /// # Errors
    /// As [`Client::get`].
    pub async fn get_bytes(&self, cap: &Cap) -> Result<Vec<u8>, OpError> {
        let mut out = Vec::new();
        self.get(cap, &mut out, &no_progress).await?;
        Ok(out)
    }

    /// Fetch the file `cap` names to `path`: written to a temporary file
    /// beside it and renamed into place only once complete and verified, so
    /// a failure leaves no partial file.
    ///
    /// # Errors
    /// As [`Client::get`], and the temporary file's I/O.
    pub async fn get_to_file(
        &self,
        cap: &Cap,
        path: &Path,
        progress: Progress<'_>,
    ) -> Result<DownloadReport, OpError> {
        let tmp = partial_path(path);
        let file_err = |p: &Path| {
            let p = p.to_path_buf();
            move |source| OpError::File { path: p, source }
        };
        let mut f = tokio::fs::File::create(&tmp)
            .await
            .map_err(file_err(&tmp))?;
        let r = self.get(cap, &mut f, progress).await;
        let r = match r {
            Ok(rep) => f.sync_all().await.map_err(file_err(&tmp)).map(|_| rep),
            Err(e) => Err(e),
        };
        let r = r.and_then(|rep| {
            std::fs::rename(&tmp, path)
                .map_err(file_err(path))
                .map(|_| rep)
        });
        if r.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        r
    }

    /// Which servers hold the shares of the file `cap` names; with
    /// `verify`, each share is downloaded and checked against the
    /// capability.
    ///
    /// # Errors
    /// The node cannot be asked. Missing shares are not an error: the
    /// report counts them.
    pub async fn check(&self, cap: &Cap, verify: bool) -> Result<CheckReport, OpError> {
        let servers = self.servers().await?;
        Ok(client::check(&self.pool, &servers, cap, verify).await?)
    }
}

/// `.NAME.partial` beside `path`.
fn partial_path(path: &Path) -> PathBuf {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    parent.join(format!(
        ".{}.partial",
        path.file_name()
            .and_then(|f| f.to_str())
            .unwrap_or("grapevine")
    ))
}

fn decode_record(id: &str, hex: &str) -> Result<SignedRecord, OpError> {
    let bad = |message: String| OpError::BadMember {
        id: id.to_string(),
        message,
    };
    let bytes = data_encoding::HEXLOWER
        .decode(hex.as_bytes())
        .map_err(|e| bad(format!("record is not hex: {e}")))?;
    let rec = SignedRecord::decode(&bytes).map_err(|e| bad(e.to_string()))?;
    if rec.node_id().to_string() != id {
        return Err(bad("record is another node's".into()));
    }
    Ok(rec)
}

impl From<crate::error::ConfigError> for OpError {
    fn from(e: crate::error::ConfigError) -> Self {
        OpError::Node(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_files_sit_beside_their_target() {
        assert_eq!(
            partial_path(Path::new("/a/b/f.bin")),
            Path::new("/a/b/.f.bin.partial")
        );
        assert_eq!(partial_path(Path::new("f")), Path::new("./.f.partial"));
    }

    #[test]
    fn a_member_record_must_be_the_members_own() {
        let a = Identity::generate();
        let b = Identity::generate();
        let rec = grapevine_crypto::LocationRecord::new(&a, vec!["127.0.0.1:1".parse().unwrap()])
            .sign(&a)
            .unwrap();
        let hex = data_encoding::HEXLOWER.encode(rec.bytes());
        assert!(decode_record(&a.node_id().to_string(), &hex).is_ok());
        assert!(decode_record(&b.node_id().to_string(), &hex).is_err());
        assert!(decode_record(&a.node_id().to_string(), "zz").is_err());
    }
}
