//! `bench check`: what a check costs a client holding sessions to the
//! servers (warm) and one holding none (cold), on a local grid of share
//! servers in this process (issue 20's cold check, without the grid's
//! thousand nodes around it).
//!
//! One 1 MiB file is put on `--servers` local servers (3-of-10), then the
//! benchmark alternates, `--checks` times: a check over the warm pool,
//! a check by a fresh pool of the same client (listings, no handshake;
//! the pair keys of client and servers remembered; asked in datagrams), the
//! same over TCP listings only (what a cold check cost before datagram
//! listings), a check by a client never seen before (listings, and a pair key derived on each side: a
//! first contact), and opening a session to each of the first ten servers
//! from a fresh pool (what a cold check cost before listings). It reports
//! the p50 and p95 of each.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use grapevine_crypto::{Identity, LocationRecord, SessionConfig};
use grapevine_storage::client::{self, ClientIdentity, KeyMode, ServerRef};
use grapevine_storage::{Params, PoolConfig, SessionPool};
use serde::Serialize;

/// Arguments of `bench check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Checks of each kind.
    #[arg(long, default_value_t = 200)]
    pub checks: usize,
    /// Share servers.
    #[arg(long, default_value_t = 10)]
    pub servers: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// p50 and p95 of one kind, milliseconds.
#[derive(Debug, Serialize)]
pub struct Quantiles {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
}

/// The report.
#[derive(Debug, Serialize)]
pub struct CheckReport {
    /// Checks of each kind.
    pub checks: usize,
    /// A check over sessions held to every server.
    pub warm_ms: Quantiles,
    /// A check by a client holding no session (listings, in datagrams).
    pub cold_ms: Quantiles,
    /// The same, with listings over TCP only.
    pub cold_tcp_ms: Quantiles,
    /// A check by a client no server has met (listings, pair keys derived).
    pub first_contact_ms: Quantiles,
    /// Opening sessions to ten servers at once from a fresh pool.
    pub ten_sessions_ms: Quantiles,
    /// `cold_ms.p50 / warm_ms.p50`.
    pub cold_over_warm: f64,
}

fn quantiles(mut v: Vec<f64>) -> Quantiles {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Quantiles {
        p50: at(0.5),
        p95: at(0.95),
    }
}

/// Run the benchmark.
///
/// # Errors
/// Setup failures, a check that fails or finds the file unhealthy.
pub fn run(args: &CheckArgs) -> Result<()> {
    anyhow::ensure!(args.checks > 0, "--checks must be at least 1");
    anyhow::ensure!(
        args.servers >= 10,
        "--servers must be at least 10 (3-of-10)"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let r = rt.block_on(bench(args))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "check of a 1 MiB file, {} servers, {} checks each (ms):",
            args.servers, r.checks
        );
        for (what, q) in [
            ("warm (sessions held)", &r.warm_ms),
            ("cold (listings)", &r.cold_ms),
            ("cold (TCP listings)", &r.cold_tcp_ms),
            ("first contact", &r.first_contact_ms),
            ("ten sessions opened", &r.ten_sessions_ms),
        ] {
            println!("  {what:24} p50 {:6.3}  p95 {:6.3}", q.p50, q.p95);
        }
        println!("  cold / warm p50          {:.2}x", r.cold_over_warm);
    }
    Ok(())
}

fn identity() -> Result<ClientIdentity> {
    let identity = Arc::new(Identity::generate());
    let record = LocationRecord::new(&identity, vec!["127.6.1.2:1".parse()?]).sign(&identity)?;
    Ok(ClientIdentity {
        identity,
        record,
        session: SessionConfig::default(),
    })
}

async fn bench(args: &CheckArgs) -> Result<CheckReport> {
    let (servers, _dirs) =
        crate::bench_storage::local_servers(args.servers, [127, 6, 1, 1], None).await?;
    let me = identity()?;
    let warm = SessionPool::new(me.clone(), PoolConfig::default());
    let data = vec![7u8; 1 << 20];
    let up = client::upload(
        &warm,
        &servers,
        client::UploadRequest {
            params: Params::default(),
            mode: KeyMode::Random,
            size: data.len() as u64,
            input: &data[..],
            hash_input: None::<&[u8]>,
        },
        &|_| {},
    )
    .await
    .context("upload")?;
    let grapevine_storage::Cap::Chk(chk) = &up.cap else {
        anyhow::bail!("a 1 MiB file is stored, not carried in its capability");
    };
    let first_ten: Vec<ServerRef> = client::permuted_servers(&chk.verify_cap().si, &servers)
        .into_iter()
        .take(10)
        .collect();
    let (mut w, mut c, mut f, mut s) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut ct = Vec::new();
    let tcp_only = PoolConfig {
        datagram_listings: false,
        ..PoolConfig::default()
    };
    for _ in 0..args.checks {
        let t = Instant::now();
        let r = client::check(&warm, &servers, &up.cap, false).await?;
        w.push(t.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(r.results.healthy, "warm check: {}", r.summary);

        let cold = SessionPool::new(me.clone(), PoolConfig::default());
        let t = Instant::now();
        let r = client::check(&cold, &servers, &up.cap, false).await?;
        c.push(t.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(r.results.healthy, "cold check: {}", r.summary);
        anyhow::ensure!(cold.sessions_opened() == 0, "a cold check opened sessions");
        anyhow::ensure!(
            cold.datagram_listings_answered() == cold.listings_asked(),
            "of {} listings, {} answered in datagrams",
            cold.listings_asked(),
            cold.datagram_listings_answered()
        );

        let cold_tcp = SessionPool::new(me.clone(), tcp_only);
        let t = Instant::now();
        let r = client::check(&cold_tcp, &servers, &up.cap, false).await?;
        ct.push(t.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(r.results.healthy, "cold TCP check: {}", r.summary);
        anyhow::ensure!(cold_tcp.datagram_listings_answered() == 0);

        let stranger = SessionPool::new(identity()?, PoolConfig::default());
        let t = Instant::now();
        let r = client::check(&stranger, &servers, &up.cap, false).await?;
        f.push(t.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(r.results.healthy, "first-contact check: {}", r.summary);

        let fresh = Arc::new(SessionPool::new(me.clone(), PoolConfig::default()));
        let t = Instant::now();
        let mut opening = tokio::task::JoinSet::new();
        for &server in &first_ten {
            let pool = fresh.clone();
            opening.spawn(async move { pool.get(server).await.map(drop) });
        }
        while let Some(opened) = opening.join_next().await {
            opened?.context("opening a session")?;
        }
        s.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (warm_ms, cold_ms) = (quantiles(w), quantiles(c));
    Ok(CheckReport {
        checks: args.checks,
        cold_over_warm: cold_ms.p50 / warm_ms.p50,
        warm_ms,
        cold_ms,
        cold_tcp_ms: quantiles(ct),
        first_contact_ms: quantiles(f),
        ten_sessions_ms: quantiles(s),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A short run puts the file, checks it healthy both ways (the cold
    /// ones opening no session) and reports every kind.
    #[test]
    fn a_short_run_checks_both_ways_and_reports() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let args = CheckArgs {
            checks: 3,
            servers: 10,
            json: true,
        };
        let r = rt.block_on(bench(&args)).unwrap();
        assert_eq!(r.checks, 3);
        for q in [
            &r.warm_ms,
            &r.cold_ms,
            &r.cold_tcp_ms,
            &r.first_contact_ms,
            &r.ten_sessions_ms,
        ] {
            assert!(q.p50 > 0.0 && q.p95 >= q.p50, "{r:?}");
        }
        assert!(r.cold_over_warm > 0.0);
    }

    #[test]
    fn quantiles_pick_the_nearest_rank() {
        let q = quantiles((1..=100).map(f64::from).collect());
        assert_eq!((q.p50, q.p95), (51.0, 95.0));
        let one = quantiles(vec![7.0]);
        assert_eq!((one.p50, one.p95), (7.0, 7.0));
    }
}
