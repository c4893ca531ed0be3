//! The gateway's pages, rendered on the server with `maud` (which escapes
//! every value it inserts, so a member's nickname is always text): the
//! welcome page (the grid at a glance, the member table, this node's
//! status, the upload and open forms), the file page (sizes, capabilities,
//! links, its check result), the upload result and a JSON viewer. Each page
//! loads only `/static/gateway.css` and `/static/gateway.js` from the
//! gateway itself; the script refreshes the welcome page's figures from
//! `/members?t=json` and `/statistics?t=json` and builds rows with
//! `textContent`, never markup. Without the script the pages still work.

use maud::{html, Markup, DOCTYPE};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::Value;

use crate::gateway::grid::GridView;
use crate::state::StatusReport;

/// `bytes` for people: B, KiB, MiB, GiB, TiB.
pub fn human_bytes(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// Seconds for people.
pub fn human_secs(s: f64) -> String {
    let s = s.max(0.0);
    if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 86400.0 {
        format!("{:.1} h", s / 3600.0)
    } else {
        format!("{:.1} d", s / 86400.0)
    }
}

/// A path segment, percent-encoded.
pub fn seg(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

fn layout(title: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) }
                link rel="stylesheet" href="/static/gateway.css";
                script src="/static/gateway.js" defer {}
            }
            body {
                header {
                    a.brand href="/" { "grapevine" }
                    nav {
                        a href="/" { "grid" }
                        a href="/status" { "operations" }
                        a href="/statistics" { "statistics" }
                    }
                }
                main { (body) }
            }
        }
    }
    .into_string()
}

fn member_rows(view: &GridView) -> Markup {
    html! {
        @for m in &view.members {
            tr data-id=(m.id) data-state=(m.state) class={ "state-" (m.state) } {
                td.nickname {
                    (m.nickname.as_deref().unwrap_or(""))
                    @if m.is_self { " " span.self { "(this node)" } }
                }
                td.id { code title=(m.id) { (m.short) } }
                td.address { (m.address) }
                td.state { span.badge { (m.state) } }
                td.capacity.num { (human_bytes(u64::from(m.capacity_mib) << 20)) }
                td.free.num { (human_bytes(u64::from(m.free_mib) << 20)) }
                td.heard.num { @if m.is_self { "now" } @else { (human_secs(m.last_heard_s)) " ago" } }
            }
        }
    }
}

/// The welcome page.
pub fn welcome(view: &GridView, status: &StatusReport, token_needed: bool) -> String {
    let name = status.nickname.clone().unwrap_or_default();
    let c = &view.counts;
    let body = html! {
        section #glance {
            h1 { "The grid, as " @if name.is_empty() { "this node" } @else { (name) } " sees it" }
            p.sub { "node " code #node-id title=(status.id) { (status.id.get(..10).unwrap_or(&status.id)) } }
            div.counts {
                div.count.alive { span #count-alive.n { (c.alive) } span.l { "alive" } }
                div.count.suspect { span #count-suspect.n { (c.suspect) } span.l { "suspect" } }
                div.count.dead { span #count-dead.n { (c.dead) } span.l { "dead" } }
                div.count.left { span #count-left.n { (c.left) } span.l { "left" } }
            }
        }
        section #members-section {
            h2 { "Members" }
            table #members {
                thead { tr {
                    th { "nickname" } th { "id" } th { "address" } th { "state" }
                    th.num { "capacity" } th.num { "free" } th.num { "last heard" }
                } }
                tbody { (member_rows(view)) }
            }
            p.note { "Refreshes itself every two seconds. " a href="/members?t=json" { "As JSON" } }
        }
        section #node {
            h2 { "This node" }
            dl.figures {
                dt { "uptime" } dd #st-uptime { (human_secs(status.uptime_s)) }
                dt { "records" } dd #st-records { (status.records) }
                dt { "sessions open" } dd #st-sessions { (status.sessions_open) }
                dt { "stored" } dd #st-stored { (human_bytes(status.storage_used)) }
                dt { "available" } dd #st-available { (human_bytes(status.storage_free)) }
                dt { "storage requests" } dd #st-requests { (status.storage_requests) }
                dt { "repair" } dd #st-repair {
                    (status.repair.repair_started) " started, "
                    (status.repair.repair_succeeded) " healed, "
                    (status.repair.repair_queue) " waiting"
                }
            }
        }
        section #upload {
            h2 { "Upload a file" }
            form #upload-form action="/uri?t=upload" method="post" enctype="multipart/form-data" {
                input type="hidden" name="t" value="upload";
                @if token_needed {
                    label { "API token " input #upload-token type="password" name="token" autocomplete="off" required; }
                }
                input #upload-file type="file" name="file" required;
                button #upload-submit type="submit" { "Upload" }
            }
            p.note { "The file is encrypted and erasure-coded by this node; you get its capability, the only way to read it again." }
        }
        section #open {
            h2 { "Open a file" }
            form action="/uri" method="get" {
                input type="hidden" name="t" value="info";
                input #open-cap type="text" name="uri" placeholder="gv:chk:… or gv:lit:…" size="60" required;
                button type="submit" { "Open" }
            }
        }
    };
    layout("grapevine", body)
}

/// The page of the file `cap` (`size` bytes, storage index `si`, `k` of
/// `n`), with a check result (Tahoe's check JSON) if one was made.
pub fn file_page(
    cap: &str,
    size: u64,
    si: &str,
    k_of_n: Option<(u16, u16)>,
    check: Option<(&Value, bool)>,
) -> String {
    let c = seg(cap);
    let body = html! {
        h1 { "A file" }
        dl.figures {
            dt { "size" } dd #file-size { (human_bytes(size)) " (" (size) " bytes)" }
            @if let Some((k, n)) = k_of_n {
                dt { "encoding" } dd { (k) " of " (n) " shares needed" }
                dt { "storage index" } dd { code { (si) } }
            } @else {
                dt { "stored" } dd { "in the capability itself (a literal file)" }
            }
            dt { "read capability" } dd { code #file-cap.cap { (cap) } }
        }
        p.links {
            a #file-download href={ "/uri/" (c) } { "download" }
            " · "
            a href={ "/uri/" (c) "?t=json" } { "JSON" }
        }
        @if let Some((j, verified)) = check {
            section #check {
                h2 { @if verified { "Verified" } @else { "Checked" } ": " span #check-summary { (j["summary"].as_str().unwrap_or("Healthy")) } }
                @let r = &j["results"];
                @if k_of_n.is_some() {
                    dl.figures {
                        dt { "good shares" } dd #check-good { (r["count-shares-good"]) " of " (r["count-shares-expected"]) " (" (r["count-shares-needed"]) " needed)" }
                        dt { "servers with good shares" } dd { (r["count-good-share-hosts"]) }
                        dt { "happiness" } dd { (r["count-happiness"]) }
                        dt { "corrupt shares" } dd #check-corrupt { (r["count-corrupt-shares"]) }
                        dt { "recoverable" } dd { (r["recoverable"]) }
                    }
                    @if let Some(map) = r["sharemap"].as_object() {
                        table.sharemap {
                            thead { tr { th { "share" } th { "servers" } } }
                            tbody { @for (sh, servers) in map {
                                tr { td.num { (sh) } td { @for s in servers.as_array().into_iter().flatten() { code { (s.as_str().unwrap_or("").get(..10).unwrap_or("")) } " " } } }
                            } }
                        }
                    }
                }
            }
        }
        form.inline action={ "/uri/" (c) "?t=check&verify=true" } method="post" {
            button #verify type="submit" { "Verify every share" }
        }
    };
    layout("grapevine: a file", body)
}

/// What an upload through the form answers.
pub fn upload_result(cap: &str, name: Option<&str>) -> String {
    let c = seg(cap);
    let body = html! {
        h1 { "Uploaded" }
        p { "Its capability (keep it: it is the only way to read the file, and anyone who has it can):" }
        p { code #upload-cap.cap { (cap) } }
        p.links {
            @if let Some(n) = name.filter(|n| !n.is_empty()) {
                a #upload-download href={ "/uri/" (c) "?filename=" (seg(n)) } { "download " (n) }
                " · "
                a href={ "/named/" (c) "/" (seg(n)) } { "named link" }
            } @else {
                a #upload-download href={ "/uri/" (c) } { "download" }
            }
            " · "
            a #upload-info href={ "/uri/" (c) "?t=info" } { "file page" }
            " · "
            a href="/" { "back to the grid" }
        }
    };
    layout("grapevine: uploaded", body)
}

/// A JSON document shown as a page (`/status`, `/statistics`).
pub fn json_page(title: &str, value: &Value) -> String {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    let body = html! {
        h1 { (title) }
        pre.json { (text) }
    };
    layout(title, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::grid::{Counts, Member};

    #[test]
    fn member_values_are_text_never_markup() {
        let m = Member {
            id: "a".repeat(52),
            short: "aaaaaaaaaa".into(),
            nickname: Some("<img src=x onerror=alert(1)>".into()),
            address: "127.0.0.1:1".into(),
            state: "alive\" onclick=\"x".into(),
            capacity_mib: 1,
            free_mib: 1,
            last_heard_s: 1.0,
            version: "<script>".into(),
            storage: true,
            is_self: false,
        };
        let view = GridView {
            node: m.id.clone(),
            counts: Counts::default(),
            members: vec![m],
        };
        let status: StatusReport = serde_json::from_value(serde_json::json!({
            "records_unadmitted": 0, "datagrams_rate_limited": 0, "datagrams_from_outsiders": 0,
            "id": "b".repeat(52), "nickname": "<b>me</b>", "uptime_s": 1.0, "records": 1,
            "alive": 1, "suspect": 0, "dead": 0, "left": 0, "datagrams_sent": 0, "bytes_sent": 0,
            "datagrams_received": 0, "datagrams_sent_per_s": 0.0, "bytes_sent_per_s": 0.0,
            "sessions_open": 0, "storage_requests": 0, "storage_request_mean_ms": 0.0,
            "rss_bytes": 0, "storage_capacity": 0, "storage_used": 0, "storage_disk_free": 0,
            "storage_reserve": 0, "storage_free": 0, "published_free_mib": 0,
            "storage_serving": true
        }))
        .unwrap();
        let page = welcome(&view, &status, true);
        assert!(!page.contains("<img src=x"), "{page}");
        assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(!page.contains("<b>me"));
        assert!(!page.contains("alive\" onclick"));
        assert!(
            page.contains("name=\"token\""),
            "the token field when needed"
        );
        assert!(!page.contains("<script>alert"));
        let up = upload_result("gv:lit:abc", Some("a b\".txt"));
        assert!(
            up.contains("/uri/gv%3Alit%3Aabc?filename=a%20b%22%2Etxt"),
            "{up}"
        );
    }

    #[test]
    fn sizes_and_times_for_people() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(10 << 30), "10.0 GiB");
        assert_eq!(human_secs(2.3), "2.3 s");
        assert_eq!(human_secs(7200.0), "2.0 h");
    }
}
