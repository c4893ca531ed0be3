//! A grapevine node as a library.
//!
//! Everything a node is, apart from how a command line drives it:
//!
//! | module | job |
//! | --- | --- |
//! | [`config`] | `config.toml`: schema, defaults, loading with errors naming file, line and key |
//! | [`dir`] | the node directory: its paths, [`dir::init`] |
//! | [`node`] | the runtime: [`Node::start`], [`Node::leave`], [`run`] |
//! | [`state`] | the running node's shared state ([`NodeState`]), which makes the reports |
//! | [`reports`] | what a node reports about itself: [`StatusReport`], [`RepairFigures`], [`Whoami`] |
//! | [`membership`] | the node's own record and its gossip task |
//! | [`seq`] | sequence numbers that only go up (`DIR/last_seq`), the wall clock |
//! | [`peers`] | the peer cache (`DIR/peers`) a restarted node rejoins through |
//! | [`storage`] | the share server, on the runtime the embedder chooses |
//! | [`control`] | the control socket protocol, server and client side |
//! | [`metrics`] | Prometheus metrics read from the state at each scrape |
//! | [`http`] | the optional HTTP server of metrics |
//! | [`gateway`] | the web gateway: Tahoe's web API and a page that shows the grid |
//! | [`client`] | put, get, check and repair through a node's view of the grid |
//! | [`repair`] | the automatic repair job |
//! | [`repair_stats`] | what the repair job has done and its settings |
//! | [`repair_state`] | the repair job's memory across restarts (`DIR/repair_state`) |
//! | [`procfs`] | process figures from /proc |
//!
//! Dependencies point one way: `control`, `metrics`, `http`, `gateway` and
//! `client` read [`state`]; only [`node`] starts and stops things. A process may run
//! one node (`grapevine run`: storage on its own runtime, control socket and
//! metrics on, [`Options::process`]) or a thousand (a harness:
//! [`Options::in_process`], one runtime for all, no per-node HTTP server).
//!
//! ```
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! use grapevine_node::{dir, Config, Node, NodeDir, Options, PutOptions};
//! use grapevine_storage::Params;
//!
//! let tmp = tempfile::tempdir().unwrap();
//! let mut nodes = Vec::new();
//! let mut seed = None;
//! for i in 0..3 {
//!     let d = NodeDir::new(tmp.path().join(format!("n{i}")));
//!     let listen = "127.0.0.1:0".parse().unwrap();
//!     dir::init(&d, &dir::InitOptions { listen, advertise: vec![], seeds: vec![], nickname: None, capacity_mib: 100, gateway: None }).unwrap();
//!     let mut cfg = Config::new(listen);
//!     cfg.reserve_mib = 0;
//!     cfg.seeds = seed.into_iter().map(Into::into).collect();
//!     let node = Node::start(cfg, &d, Options::in_process()).await.unwrap();
//!     seed.get_or_insert(node.local_addr());
//!     nodes.push(node);
//! }
//! let client = nodes[0].client();
//! let opts = PutOptions { params: Params { k: 2, n: 3, happy: 3 }, random_key: false };
//! // Wait until node 0 sees the other two as storage servers.
//! while client.servers().await.unwrap().len() < 3 {
//!     tokio::time::sleep(std::time::Duration::from_millis(50)).await;
//! }
//! let up = client.put_bytes(&vec![7u8; 100_000], opts).await.unwrap();
//! assert_eq!(nodes[2].client().get_bytes(&up.cap).await.unwrap(), vec![7u8; 100_000]);
//! # });
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod addr;
pub mod client;
pub mod config;
pub mod control;
pub mod dir;
pub mod error;
pub mod gateway;
pub mod http;
pub mod membership;
pub mod metrics;
pub mod node;
pub mod output;
pub mod peers;
pub mod procfs;
pub mod record;
pub mod repair;
pub mod repair_state;
pub mod repair_stats;
pub mod reports;
pub mod seq;
pub mod state;
pub mod storage;

pub use client::{Client, PutOptions};
pub use config::{Config, Role};
pub use dir::NodeDir;
pub use error::{ConfigError, ControlError, InitError, NodeError, OpError};
pub use node::{run, Node, Options, Sockets};
pub use state::{MemberRow, NodeState, RepairFigures, StatusReport, Whoami};
pub use storage::StorageRuntime;
