//! The gateway's welcome page in headless Chromium (Debian's `chromium`
//! and `chromium-driver`, driven over WebDriver): the member table shows the
//! grid and changes by itself when a member dies; a file uploaded through
//! the form downloads again and its file page shows its check. The page
//! runs under its strict Content-Security-Policy, so these pass only if its
//! script and style load from the gateway itself.
//!
//! Without chromium and chromedriver the tests say so and pass, except
//! under `CI=true`, where they fail (`.ci/run` installs both). Neither can
//! hang or leave a browser behind (`common/browser.rs`). With
//! `GV_SCREENSHOT=FILE` set, the first test saves the page (a grid with a
//! dead member) as a PNG there: that is how `docs/gateway.png` is made.

#[path = "common/browser.rs"]
mod browser;
#[path = "common/grid.rs"]
mod grid;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use browser::{within, Browser};
use fantoccini::{Client, Locator};
use grid::{gateway, settings};

/// The most a page test may take (it fails then, and its browser is
/// killed).
const LIMIT: Duration = Duration::from_secs(300);

/// Poll `cond` in the browser until it holds, failing after `secs`.
async fn until<F, Fut>(what: &str, secs: u64, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `[(id, nickname, state)]` of the member table as the browser shows it.
async fn table(c: &Client) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for row in c
        .find_all(Locator::Css("#members tbody tr"))
        .await
        .unwrap_or_default()
    {
        let id = row.attr("data-id").await.ok().flatten().unwrap_or_default();
        let state = row
            .attr("data-state")
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        let nick = match row.find(Locator::Css("td.nickname")).await {
            Ok(td) => td.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        out.push((id, nick, state));
    }
    out
}

fn url(gw: SocketAddr, path: &str) -> String {
    format!("http://{gw}{path}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_member_table_shows_the_grid_and_follows_a_death() {
    within(LIMIT, member_table()).await
}

async fn member_table() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let c = b.client.clone();
    let mut g = grid::grid(5, None).await;
    let (gw, _task) = gateway(&g, settings()).await;
    // A file on the grid, so the node's figures show some work.
    let put = grid::req(gw, "PUT", "/uri", &[], &grid::data(3 << 20, 9)).await;
    assert_eq!(put.status, 200, "{}", put.text());
    c.goto(&url(gw, "/")).await.unwrap();
    let rows = table(&c).await;
    assert_eq!(rows.len(), 5, "{rows:?}");
    assert!(rows.iter().all(|r| r.2 == "alive"), "{rows:?}");
    assert!(rows[0].1.contains("node-0") && rows[0].1.contains("(this node)"));
    let count = |c: &Client| {
        let c = c.clone();
        async move {
            c.find(Locator::Id("count-alive"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    assert_eq!(count(&c).await, "5");

    // Node 4 crashes. The page is not reloaded: its script refreshes the
    // table and the counts until they show the member gone.
    let victim = g.nodes[4].take().unwrap().id().to_string();
    until("the table to show node-4 not alive", 90, || {
        let c = c.clone();
        let victim = victim.clone();
        async move {
            table(&c)
                .await
                .iter()
                .any(|(id, _, state)| *id == victim && (state == "suspect" || state == "dead"))
        }
    })
    .await;
    until("the count of alive members to be 4", 30, || {
        let c = c.clone();
        async move { count(&c).await == "4" }
    })
    .await;
    let rows = table(&c).await;
    assert_eq!(rows.len(), 5, "a dead member stays in the table: {rows:?}");
    // The node's own figures are there too.
    let uptime = c
        .find(Locator::Id("st-uptime"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        uptime.ends_with(" s") || uptime.ends_with(" min"),
        "{uptime}"
    );
    let shot = c.screenshot().await.unwrap();
    assert!(shot.starts_with(b"\x89PNG"), "a PNG screenshot");
    if let Ok(path) = std::env::var("GV_SCREENSHOT") {
        std::fs::write(&path, &shot).unwrap();
        eprintln!("screenshot saved to {path}");
    }
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_uploaded_through_the_form_downloads_again() {
    within(LIMIT, upload_form()).await
}

async fn upload_form() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let c = b.client.clone();
    let g = grid::grid(4, None).await;
    let (gw, _task) = gateway(&g, settings()).await;
    let dir = tempfile::tempdir().unwrap();
    let text: String = (0..4000)
        .map(|i| format!("line {i} of a file stored on the grid\n"))
        .collect();
    let path = dir.path().join("hello grid.txt");
    std::fs::write(&path, &text).unwrap();

    c.goto(&url(gw, "/")).await.unwrap();
    c.find(Locator::Id("upload-file"))
        .await
        .unwrap()
        .send_keys(path.to_str().unwrap())
        .await
        .unwrap();
    c.find(Locator::Id("upload-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let cap_el = match c
        .wait()
        .at_most(Duration::from_secs(60))
        .for_element(Locator::Id("upload-cap"))
        .await
    {
        Ok(e) => e,
        Err(e) => panic!(
            "no upload result ({e}): {}",
            c.source().await.unwrap_or_default()
        ),
    };
    let cap = cap_el.text().await.unwrap();
    assert!(cap.starts_with("gv:chk:"), "{cap}");

    // The link downloads it: a .txt is shown inline as text.
    c.find(Locator::Id("upload-download"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let shown = c
        .execute("return document.body.innerText", vec![])
        .await
        .unwrap();
    assert_eq!(shown.as_str().unwrap().trim_end(), text.trim_end());
    // And byte for byte over plain HTTP.
    let r = grid::get(gw, &format!("/uri/{}", grid::enc(&cap))).await;
    assert!(r.body == text.as_bytes());

    // The file page shows its check.
    c.goto(&url(gw, &format!("/uri/{}?t=info", grid::enc(&cap))))
        .await
        .unwrap();
    let summary = c
        .find(Locator::Id("check-summary"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(summary, "Healthy");
    let good = c
        .find(Locator::Id("check-good"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(good.starts_with("4 of 4"), "{good}");
    c.close().await.unwrap();
}
