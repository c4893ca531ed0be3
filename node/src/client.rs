//! Client operations through a node's view of the grid: put, get, check,
//! repair.
//!
//! A [`Client`] knows who it is (the node's identity and record), which
//! storage servers there are (asked afresh for every operation, from the
//! node's membership) and holds a capped pool of sessions to them. It is
//! made either for a node running in this process ([`Client::of_node`],
//! sharing the node's pool, as the grid harness and the gateway do) or for
//! a node running as another process ([`Client::for_dir`], which asks the
//! node's control socket, as the CLI does). The CLI, the tests, the gateway
//! and the grid harness all call these same functions.
//!
//! Uploads take a file's size from what is read, never from metadata: a
//! regular file is read where it lies (its size fixed when opened); anything
//! else (a pipe, `/dev/stdin`, a process substitution) is first spooled to
//! a private temporary file ([`Client::put_reader`]), because a share's
//! size is announced to its server before any of it is sent and a
//! convergent key hashes the whole content first. Downloads go where
//! [`Target`] says (see [`crate::output`]).

use std::path::Path;
use std::sync::Arc;

use grapevine_crypto::{Identity, SignedRecord};
use grapevine_storage::client::{
    self, CheckResults, ClientIdentity, DownloadReport, KeyMode, RepairOptions, RepairResults,
    ServerRef, UploadReport, UploadRequest,
};
use grapevine_storage::{Cap, MemoryBudget, Params, SessionPool, VerifyCap};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::control;
use crate::dir::NodeDir;
use crate::error::OpError;
use crate::output::{BlockingFile, Sink, Target};
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
    params: Params,
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
            params: node.params,
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
        Client::for_dir_with_memory(dir, None).await
    }

    /// [`Client::for_dir`], its operations held to `memory` instead of the
    /// node's `memory_budget_mib` if given (the CLI's `--memory-budget`).
    ///
    /// # Errors
    /// As [`Client::for_dir`].
    pub async fn for_dir_with_memory(
        dir: &NodeDir,
        memory: Option<MemoryBudget>,
    ) -> Result<Client, OpError> {
        let identity = Arc::new(dir.load_identity()?);
        let convergence = dir.convergence_secret()?;
        let config = dir.load_config().map_err(crate::error::NodeError::from)?;
        let w = control::whoami(dir).await?;
        let record = decode_record(&w.id, w.record.as_deref().unwrap_or_default())?;
        let me = ClientIdentity {
            identity,
            record,
            session: config.session_config(),
        };
        let mut pool = config.pool_config();
        if let Some(m) = memory {
            pool.memory = m;
        }
        Ok(Client {
            pool: Arc::new(SessionPool::new(me, pool)),
            view: View::Control(dir.clone()),
            convergence,
            params: config.params(),
        })
    }

    /// The share parameters uploads use unless told otherwise (the node's
    /// `shares_needed`, `shares_total`, `shares_happy`).
    pub fn default_params(&self) -> Params {
        self.params
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

    /// Keep `f`'s own buffer (tokio copies every read and write through
    /// one, 2 MiB at most by default) within the memory budget.
    fn bound(&self, f: &mut tokio::fs::File) {
        f.set_max_buf_size(self.pool.config().memory.write_chunk());
    }

    /// `file` written within the memory budget: writes of at most its
    /// write size, and what was written synced and dropped from the page
    /// cache every half budget.
    fn bounded_file(&self, file: std::fs::File) -> BlockingFile {
        let m = self.pool.config().memory;
        BlockingFile::new(file).bounded(m.write_chunk(), m.bytes().map(|b| b / 2))
    }

    /// Store `data`.
    ///
    /// # Errors
    /// As [`Client::put`].
    pub async fn put_bytes(&self, data: &[u8], opts: PutOptions) -> Result<UploadReport, OpError> {
        self.put(data, Some(data), data.len() as u64, opts, &no_progress)
            .await
    }

    /// Store the file at `path`: a regular file is read where it lies;
    /// anything else that can be read (a pipe, `/dev/stdin`, a device) is
    /// spooled first ([`Client::put_reader`]).
    ///
    /// # Errors
    /// A directory or an unreadable file (named); otherwise as
    /// [`Client::put`].
    pub async fn put_path(
        &self,
        path: &Path,
        opts: PutOptions,
        progress: Progress<'_>,
    ) -> Result<UploadReport, OpError> {
        let file_err = |source| OpError::File {
            path: path.to_path_buf(),
            source,
        };
        let mut file = tokio::fs::File::open(path).await.map_err(file_err)?;
        let meta = file.metadata().await.map_err(file_err)?;
        if meta.is_dir() {
            return Err(OpError::IsDirectory(path.to_path_buf()));
        }
        if !meta.is_file() {
            return self.put_reader(file, opts, progress).await;
        }
        let size = meta.len();
        self.bound(&mut file);
        let hash_input = if opts.random_key {
            None
        } else {
            let mut f = tokio::fs::File::open(path).await.map_err(file_err)?;
            self.bound(&mut f);
            Some(f)
        };
        self.put(file, hash_input, size, opts, progress).await
    }

    /// Store everything `input` yields until its end (standard input, a
    /// pipe). It is spooled to a private temporary file first (in `TMPDIR`,
    /// mode 0600, removed when done): the size must be known before any
    /// share is allocated, and a convergent key hashes the whole content
    /// before anything is sent.
    ///
    /// # Errors
    /// Reading `input` or writing the spool (named); otherwise as
    /// [`Client::put`].
    pub async fn put_reader<R: AsyncRead + Unpin>(
        &self,
        mut input: R,
        opts: PutOptions,
        progress: Progress<'_>,
    ) -> Result<UploadReport, OpError> {
        let tmp = std::env::temp_dir();
        let spool_err = |source| OpError::Spool {
            dir: tmp.clone(),
            source,
        };
        // Removed when dropped; mode 0600.
        let spool = tempfile::Builder::new()
            .prefix(".grapevine-put.")
            .tempfile()
            .map_err(spool_err)?;
        let size = {
            let mut w = self.bounded_file(spool.reopen().map_err(spool_err)?);
            let n = tokio::io::copy(&mut input, &mut w)
                .await
                .map_err(spool_err)?;
            let w = w
                .into_file()
                .ok_or_else(|| spool_err(std::io::Error::other("a write was lost")))?;
            tokio::task::spawn_blocking(move || w.sync_data())
                .await
                .map_err(|e| spool_err(std::io::Error::other(e)))?
                .map_err(spool_err)?;
            n
        };
        // Separate opens: separate offsets for the key's hash and the
        // content.
        let open = || -> Result<tokio::fs::File, OpError> {
            let mut f = tokio::fs::File::from_std(spool.reopen().map_err(spool_err)?);
            self.bound(&mut f);
            Ok(f)
        };
        let hash_input = if opts.random_key { None } else { Some(open()?) };
        let input = open()?;
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

    /// Fetch the file `cap` names to `target` (see [`crate::output`]): a
    /// file is replaced only once the download has verified; a device or
    /// standard output is written into directly.
    ///
    /// # Errors
    /// As [`Client::get`]; the target's I/O. On a failure after bytes went
    /// to a device or standard output, [`OpError::Incomplete`] says how
    /// many.
    pub async fn get_to(
        &self,
        cap: &Cap,
        target: &Target,
        progress: Progress<'_>,
    ) -> Result<DownloadReport, OpError> {
        match target {
            Target::Stdout => {
                let out = BlockingFile::stdout().map_err(OpError::Output)?;
                self.get_streaming(cap, target, out, progress).await
            }
            Target::Direct { given } => {
                let path = given.clone();
                // Opening a FIFO blocks until its reader comes.
                let f = tokio::task::spawn_blocking(move || {
                    std::fs::OpenOptions::new().write(true).open(path)
                })
                .await
                .map_err(|e| OpError::Output(std::io::Error::other(e)))?
                .map_err(|source| OpError::File {
                    path: given.clone(),
                    source,
                })?;
                self.get_streaming(cap, target, BlockingFile::new(f), progress)
                    .await
            }
            Target::Replace { dest, .. } => self.get_replacing(cap, dest, progress).await,
        }
    }

    async fn get_streaming<W: AsyncWrite + Unpin>(
        &self,
        cap: &Cap,
        target: &Target,
        out: W,
        progress: Progress<'_>,
    ) -> Result<DownloadReport, OpError> {
        let mut sink = Sink::new(out);
        let r = match self.get(cap, &mut sink, progress).await {
            Ok(rep) => tokio::io::AsyncWriteExt::flush(&mut sink)
                .await
                .map(|_| rep)
                .map_err(OpError::from),
            Err(e) => Err(e),
        };
        let written = sink.written();
        let write_error = sink.write_error();
        r.map_err(|e| {
            // The target's own failure is named as such, with the path.
            let e = match write_error {
                Some(source) => OpError::Write {
                    target: target.name(),
                    source,
                },
                None => e,
            };
            match (written, &e) {
                (0, OpError::Write { .. }) | (1.., _) => OpError::Incomplete {
                    target: target.name(),
                    written,
                    source: Box::new(e),
                },
                _ => e,
            }
        })
    }

    async fn get_replacing(
        &self,
        cap: &Cap,
        dest: &Path,
        progress: Progress<'_>,
    ) -> Result<DownloadReport, OpError> {
        let dir = match dest.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = dest
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or("grapevine");
        let file_err = |p: &Path| {
            let p = p.to_path_buf();
            move |source| OpError::File { path: p, source }
        };
        // Removed when dropped, unless persisted: a failure leaves nothing.
        // Made with the mode of the file it replaces, so that a private
        // file's plaintext is never readable by others on the way; a new
        // one as any new file is (0666 less the umask), not 0600 as a
        // temporary file would be: it becomes the user's file.
        let replaced = std::fs::metadata(dest).ok().map(|m| m.permissions());
        let prefix = format!(".{name}.");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".partial");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = replaced.as_ref().map_or(0o666, |p| p.mode() & 0o777);
            builder.permissions(std::fs::Permissions::from_mode(mode));
        }
        let tmp = builder.tempfile_in(dir).map_err(file_err(dir))?;
        if let Some(p) = replaced {
            // Exactly the replaced file's permissions (the umask trimmed
            // them at creation).
            let _ = std::fs::set_permissions(tmp.path(), p);
        }
        let std_file = tmp.as_file().try_clone().map_err(file_err(tmp.path()))?;
        let mut f = self.bounded_file(std_file);
        let rep = self.get(cap, &mut f, progress).await?;
        let f = f
            .into_file()
            .ok_or_else(|| OpError::Output(std::io::Error::other("a write was lost")))?;
        tokio::task::spawn_blocking(move || f.sync_all())
            .await
            .map_err(|e| OpError::Output(std::io::Error::other(e)))?
            .map_err(file_err(tmp.path()))?;
        tmp.persist(dest).map_err(|e| OpError::File {
            path: dest.to_path_buf(),
            source: e.error,
        })?;
        Ok(rep)
    }

    /// Which servers hold the shares of the file `cap` names; with
    /// `verify`, each share is downloaded and checked against the
    /// capability. The report has Tahoe's check-result keys.
    ///
    /// # Errors
    /// The node cannot be asked. Missing shares are not an error: the
    /// report counts them.
    pub async fn check(&self, cap: &Cap, verify: bool) -> Result<CheckResults, OpError> {
        let servers = self.servers().await?;
        Ok(client::check(&self.pool, &servers, cap, verify).await?)
    }

    /// [`Client::check`] with a verify capability (no key needed).
    ///
    /// # Errors
    /// As [`Client::check`].
    pub async fn check_verify_cap(
        &self,
        cap: &VerifyCap,
        verify: bool,
    ) -> Result<CheckResults, OpError> {
        let servers = self.servers().await?;
        Ok(client::check_verify_cap(&self.pool, &servers, cap, verify).await?)
    }

    /// Check the file `cap` names and regenerate its missing and corrupt
    /// shares onto the next servers in permuted order; the report has
    /// Tahoe's check-and-repair keys. A verify capability is enough: the
    /// repairer never decrypts anything.
    ///
    /// # Errors
    /// The node cannot be asked. A failed repair is a report, not an error.
    pub async fn repair(
        &self,
        cap: &VerifyCap,
        opts: &RepairOptions,
    ) -> Result<RepairResults, OpError> {
        let servers = self.servers().await?;
        Ok(client::repair(&self.pool, &servers, cap, opts).await?)
    }
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
