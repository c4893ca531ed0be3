//! The web gateway driven over HTTP, on a grid of library nodes in this
//! process: upload, download, ranges, `t=json`, check, the node's pages and
//! figures, every error, every safety header, cross-site refusals, the Host
//! check, the API token, hostile clients, and 200 GETs at once.

#[path = "common/grid.rs"]
mod grid;

use std::time::{Duration, Instant};

use grid::{data, enc, form, gateway, get, raw, req, settings, wait_for};

const MIB: usize = 1 << 20;

/// Every response, whatever it is, carries these.
fn assert_safe(r: &grid::Resp, what: &str) {
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{what}");
    assert_eq!(
        r.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(r.header("x-frame-options"), Some("DENY"), "{what}");
    let csp = r.header("content-security-policy").unwrap_or("");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{what}: {csp}"
    );
    assert!(
        r.headers
            .iter()
            .all(|(n, _)| !n.starts_with("access-control-")),
        "{what}: no CORS"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_download_ranges_json_check_and_the_nodes_pages() {
    let g = grid::grid(4, None).await;
    let (gw, _task) = gateway(&g, settings()).await;

    // PUT /uri: the body in, the capability out.
    let file = data(3 * MIB + 777, 1);
    let r = req(gw, "PUT", "/uri", &[], &file).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_safe(&r, "PUT /uri");
    let cap = r.text();
    assert!(
        cap.starts_with("gv:chk:") && cap.ends_with(":2:4:3146505"),
        "{cap}"
    );
    let path = format!("/uri/{}", enc(&cap));

    // GET streams the whole file, as an attachment that cannot run.
    let r = get(gw, &path).await;
    assert_eq!(r.status, 200);
    assert!(r.body == file, "the file read back differs");
    assert_eq!(r.header("content-length"), Some("3146505"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(r.header("content-disposition"), Some("attachment"));
    assert!(r
        .header("content-security-policy")
        .unwrap()
        .contains("sandbox"));
    assert_safe(&r, "GET file");
    let etag = r.header("etag").expect("an ETag").to_string();
    let r = req(gw, "GET", &path, &[("if-none-match", &etag)], b"").await;
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    // HEAD: the headers, no body, no download.
    let r = req(gw, "HEAD", &path, &[], b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("3146505"));
    assert!(r.body.is_empty());

    // Ranges: across a segment boundary, open-ended, a suffix; past the
    // end is a 416; one that does not parse is the whole file.
    for (range, a, b) in [
        ("bytes=1048570-1048589", MIB - 6, MIB + 14),
        ("bytes=3145000-", 3_145_000, file.len()),
        ("bytes=-100", file.len() - 100, file.len()),
        ("bytes=0-0", 0, 1),
        ("bytes=3146000-9999999", 3_146_000, file.len()),
    ] {
        let r = req(gw, "GET", &path, &[("range", range)], b"").await;
        assert_eq!(r.status, 206, "{range}");
        assert!(r.body == file[a..b], "{range}: {} bytes", r.body.len());
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes {a}-{}/{}", b - 1, file.len()).as_str())
        );
        assert_eq!(
            r.header("content-length"),
            Some((b - a).to_string().as_str())
        );
    }
    let r = req(gw, "GET", &path, &[("range", "bytes=3146505-")], b"").await;
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */3146505"));
    assert_safe(&r, "416");
    let r = req(gw, "GET", &path, &[("range", "bytes=9-1")], b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), file.len());

    // filename= and save=, /named: a passive type inline, anything else an
    // attachment.
    let r = get(gw, &format!("{path}?filename=notes.txt")).await;
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(
        r.header("content-disposition"),
        Some("inline; filename=\"notes.txt\"")
    );
    let r = get(gw, &format!("{path}?filename=notes.txt&save=true")).await;
    assert_eq!(
        r.header("content-disposition"),
        Some("attachment; filename=\"notes.txt\"")
    );
    let r = get(gw, &format!("/named/{}/page.html", enc(&cap))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html"));
    assert_eq!(
        r.header("content-disposition"),
        Some("attachment; filename=\"page.html\"")
    );
    assert!(r.body == file);
    let r = get(gw, &format!("/named/{}/pic.png", enc(&cap))).await;
    assert_eq!(r.header("content-type"), Some("image/png"));
    assert!(r
        .header("content-disposition")
        .unwrap()
        .starts_with("inline"));

    // t=json, t=uri.
    let r = get(gw, &format!("{path}?t=json")).await;
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j[0], "filenode");
    assert_eq!(j[1]["ro_uri"], cap.as_str());
    assert_eq!(j[1]["size"], 3146505);
    assert_eq!(j[1]["mutable"], false);
    assert_eq!(j[1]["format"], "CHK");
    assert_eq!(get(gw, &format!("{path}?t=uri")).await.text(), cap);

    // Check, verify, "repair" (none attempted), as JSON and as a page.
    let r = req(gw, "POST", &format!("{path}?t=check&output=JSON"), &[], b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["summary"], "Healthy");
    assert_eq!(j["results"]["count-shares-good"], 4);
    assert_eq!(j["results"]["count-shares-needed"], 2);
    assert_eq!(j["results"]["count-shares-expected"], 4);
    assert_eq!(j["results"]["count-good-share-hosts"], 4);
    assert_eq!(j["results"]["count-happiness"], 4);
    assert_eq!(j["results"]["healthy"], true);
    assert_eq!(j["results"]["list-corrupt-shares"], serde_json::json!([]));
    assert_eq!(j["results"]["sharemap"].as_object().unwrap().len(), 4);
    let r = req(
        gw,
        "POST",
        &format!("{path}?t=check&verify=true&repair=true&output=json"),
        &[],
        b"",
    )
    .await;
    let j = r.json();
    assert_eq!(j["repair-attempted"], false);
    assert_eq!(j["repair-successful"], false);
    assert_eq!(j["pre-repair-results"]["results"]["count-shares-good"], 4);
    assert_eq!(j["pre-repair-results"], j["post-repair-results"]);
    let r = req(gw, "POST", &format!("{path}?t=check"), &[], b"").await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(r.text().contains("Healthy"));
    let r = get(gw, &format!("{path}?t=info")).await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains(&cap) && r.text().contains("Healthy"));

    // The form upload: a page with the capability, or a redirect.
    let small = data(200_000, 2);
    let (ct, body) = form(&[("t", "upload")], "small.bin", &small);
    let r = req(gw, "POST", "/uri?t=upload", &[("content-type", &ct)], &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let page = r.text();
    let start = page.find("gv:chk:").expect("the capability on the page");
    let cap2: String = page[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == ':')
        .collect();
    assert!(get(gw, &format!("/uri/{}", enc(&cap2))).await.body == small);
    let (ct, body) = form(&[("when_done", "/uri/%(uri)s?t=info")], "s.bin", &small);
    let r = req(gw, "POST", "/uri", &[("content-type", &ct)], &body).await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(
        r.header("location"),
        Some(format!("/uri/{}?t=info", enc(&cap2)).as_str())
    );

    // A literal file: in the capability, no grid.
    let r = req(gw, "PUT", "/uri", &[], b"hello, grid").await;
    let lit = r.text();
    assert!(lit.starts_with("gv:lit:"), "{lit}");
    let r = req(
        gw,
        "GET",
        &format!("/uri/{lit}"),
        &[("range", "bytes=7-")],
        b"",
    )
    .await;
    assert_eq!((r.status, r.text().as_str()), (206, "grid"));
    let j = req(
        gw,
        "POST",
        &format!("/uri/{lit}?t=check&output=JSON"),
        &[],
        b"",
    )
    .await
    .json();
    assert_eq!(
        j,
        serde_json::json!({"storage-index": "", "results": {"healthy": true}})
    );

    // The node's figures and pages.
    let j = get(gw, "/statistics?t=json").await.json();
    assert!(
        j["counters"]["uploader.files_uploaded"].as_u64().unwrap() >= 3,
        "{j}"
    );
    assert!(
        j["counters"]["downloader.bytes_downloaded"]
            .as_u64()
            .unwrap()
            > 3 * MIB as u64
    );
    assert!(j["stats"]["node.uptime"].as_f64().unwrap() > 0.0);
    assert!(j["stats"]["storage_server.disk_used"].as_u64().unwrap() > 0);
    let r = get(gw, "/statistics?t=openmetrics").await;
    assert_eq!(
        r.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(r.text().contains("grapevine_records") && r.text().ends_with("# EOF\n"));
    let j = get(gw, "/status?t=json").await.json();
    assert_eq!(j["active"], serde_json::json!([]));
    let recent = j["recent"].as_array().unwrap();
    assert!(recent
        .iter()
        .any(|o| o["type"] == "upload" && o["status"] == "finished"));
    assert!(recent
        .iter()
        .any(|o| o["type"] == "download" && o["progress"] == 1.0));
    let j = get(gw, "/members?t=json").await.json();
    assert_eq!(j["counts"]["alive"], 4);
    assert_eq!(j["members"][0]["self"], true);
    assert_eq!(j["members"].as_array().unwrap().len(), 4);
    let j = get(gw, "/?t=json").await.json();
    assert_eq!(j["servers"].as_array().unwrap().len(), 4);
    let r = get(gw, "/").await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("node-3") && r.text().contains("id=\"members\""));
    assert_safe(&r, "the welcome page");
    for asset in ["/static/gateway.js", "/static/gateway.css"] {
        let r = get(gw, asset).await;
        assert_eq!(r.status, 200, "{asset}");
        assert_safe(&r, asset);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_is_a_clear_4xx() {
    let g = grid::grid(4, None).await;
    let mut s = settings();
    s.max_upload = 100_000;
    let (gw, _task) = gateway(&g, s).await;
    let cap = req(gw, "PUT", "/uri", &[], &data(60_000, 3)).await.text();
    let path = format!("/uri/{}", enc(&cap));
    // The capability with its size changed: to 0 (a literal's size, never
    // a CHK one's: it used to be served as an empty file without asking
    // the grid), and to one byte more (the shares are found, and none
    // matches).
    let head = cap.rsplit_once(':').unwrap().0;
    let zero = format!("/uri/{}", enc(&format!("{head}:0")));
    let longer = format!("/uri/{}", enc(&format!("{head}:60001")));
    // A capability for a file no server holds.
    let lost = "gv:chk:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:\
                aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:2:4:100000";
    // A form with no part at all (the boundary `form` uses, closed at once).
    let (ct, _) = form(&[], "x", b"");
    let no_file = b"--gvtestboundary7d3--\r\n".to_vec();
    // (method, path, headers, body, status, what the answer says)
    type Case<'a> = (
        &'a str,
        String,
        Vec<(&'a str, &'a str)>,
        Vec<u8>,
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "GET",
            "/uri/URI:CHK:abc:def:3:10:100".into(),
            vec![],
            vec![],
            400,
            "not a valid file capability",
        ),
        (
            "GET",
            "/uri/gv:chk:zz".into(),
            vec![],
            vec![],
            400,
            "not a valid file capability",
        ),
        (
            "GET",
            format!("{path}?t=bogus"),
            vec![],
            vec![],
            400,
            "bad t=",
        ),
        (
            "GET",
            format!("{path}?save=maybe"),
            vec![],
            vec![],
            400,
            "invalid boolean",
        ),
        (
            "GET",
            format!("{path}/child"),
            vec![],
            vec![],
            400,
            "no children",
        ),
        ("GET", "/nowhere".into(), vec![], vec![], 404, "not found"),
        ("GET", "/uri".into(), vec![], vec![], 400, "requires uri="),
        (
            "GET",
            "/statistics?t=xml".into(),
            vec![],
            vec![],
            400,
            "bad t=",
        ),
        ("PUT", path.clone(), vec![], vec![], 400, "immutable"),
        ("DELETE", path.clone(), vec![], vec![], 405, ""),
        (
            "POST",
            format!("{path}?t=upload"),
            vec![],
            vec![],
            400,
            "immutable",
        ),
        (
            "POST",
            format!("{path}?t=check&output=xml"),
            vec![],
            vec![],
            400,
            "output=",
        ),
        (
            "POST",
            format!("{path}?t=check&verify=2"),
            vec![],
            vec![],
            400,
            "invalid boolean",
        ),
        (
            "PUT",
            "/uri?t=mkdir".into(),
            vec![],
            vec![],
            400,
            "no directories",
        ),
        (
            "POST",
            "/uri?t=mkdir".into(),
            vec![],
            vec![],
            400,
            "no directories",
        ),
        (
            "PUT",
            "/uri?k=0".into(),
            vec![],
            b"x".to_vec(),
            400,
            "invalid share parameters",
        ),
        (
            "PUT",
            "/uri?n=banana".into(),
            vec![],
            b"x".to_vec(),
            400,
            "not a number",
        ),
        (
            "PUT",
            "/uri?k=3&n=10&happy=7".into(),
            vec![],
            data(1000, 9),
            503,
            "distinct servers",
        ),
        (
            "PUT",
            "/uri".into(),
            vec![],
            data(100_001, 4),
            413,
            "larger than",
        ),
        (
            "POST",
            "/uri?t=upload".into(),
            vec![],
            b"x".to_vec(),
            400,
            "multipart/form-data",
        ),
        (
            "POST",
            "/uri?t=upload".into(),
            vec![("content-type", ct.as_str())],
            no_file,
            400,
            "no `file` field",
        ),
        (
            "GET",
            format!("/uri/{}", enc(lost)),
            vec![],
            vec![],
            410,
            "NotEnoughSharesError",
        ),
        (
            "DELETE",
            path.clone(),
            vec![],
            vec![],
            405,
            "does not take that method",
        ),
        (
            "POST",
            "/statistics".into(),
            vec![],
            vec![],
            405,
            "does not take that method",
        ),
        ("GET", zero, vec![], vec![], 400, "gv:lit: capability"),
        (
            "GET",
            longer,
            vec![],
            vec![],
            400,
            "is the capability right?",
        ),
        (
            "GET",
            path.clone(),
            vec![("range", "bytes=60000-")],
            vec![],
            416,
            "past the end",
        ),
    ];
    for (method, p, headers, body, status, says) in cases {
        let r = req(gw, method, &p, &headers, &body).await;
        assert_eq!(r.status, status, "{method} {p}: {}", r.text());
        assert!(r.text().contains(says), "{method} {p}: {:?}", r.text());
        assert_safe(&r, &format!("{method} {p}"));
    }
    // A 405 keeps the router's Allow header.
    let r = req(gw, "DELETE", &path, &[], &[]).await;
    assert!(
        r.header("allow").is_some_and(|a| a.contains("GET")),
        "{:?}",
        r.headers
    );
    // GET /uri?uri= redirects, keeping the other arguments.
    let r = get(gw, &format!("/uri?uri={}&t=info", enc(&cap))).await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some(format!("/uri/{}?t=info", enc(&cap)).as_str())
    );
    // A redirect target off the gateway is refused (it would leak the cap).
    let (ct, body) = form(&[("when_done", "http://evil.example/%(uri)s")], "a", b"abc");
    let r = req(gw, "POST", "/uri", &[("content-type", &ct)], &body).await;
    assert_eq!(r.status, 400, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_writes_and_foreign_hosts_are_refused() {
    let g = grid::grid(4, None).await;
    let (gw, _task) = gateway(&g, settings()).await;
    let uploads = |gw| async move {
        get(gw, "/statistics?t=json").await.json()["counters"]["uploader.files_uploaded"]
            .as_u64()
            .unwrap()
    };
    let own = format!("http://{gw}");
    // Writes from another site, by Origin or by Sec-Fetch-Site: refused
    // before anything is read or stored.
    for headers in [
        vec![("origin", "http://evil.example")],
        vec![("origin", "null")],
        vec![("sec-fetch-site", "cross-site")],
        vec![
            ("sec-fetch-site", "same-site"),
            ("origin", "http://127.0.0.1:1"),
        ],
        vec![("origin", own.as_str()), ("sec-fetch-site", "cross-site")],
    ] {
        for (method, path) in [("PUT", "/uri"), ("POST", "/uri?t=upload")] {
            let r = req(gw, method, path, &headers, &data(5000, 1)).await;
            assert_eq!(r.status, 403, "{method} {headers:?}: {}", r.text());
            assert!(r.text().contains("another site"));
            assert_safe(&r, "403");
        }
    }
    assert_eq!(uploads(gw).await, 0, "nothing was stored");
    // The gateway's own pages may write; reads from anywhere are answered
    // (but, with no CORS header, never readable by another origin).
    let r = req(
        gw,
        "PUT",
        "/uri",
        &[("origin", &own), ("sec-fetch-site", "same-origin")],
        &data(5000, 1),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = req(
        gw,
        "GET",
        "/members?t=json",
        &[("origin", "http://evil.example")],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_safe(&r, "a cross-origin read");
    let r = req(
        gw,
        "OPTIONS",
        "/uri",
        &[
            ("origin", "http://evil.example"),
            ("access-control-request-method", "PUT"),
        ],
        b"",
    )
    .await;
    assert_eq!(r.status, 403, "a preflight from another site is refused");
    assert_safe(&r, "OPTIONS");
    assert_eq!(req(gw, "OPTIONS", "/uri", &[], b"").await.status, 405);
    // Host must name the gateway: a rebound name is refused, reads too.
    let port = gw.port();
    for host in [
        format!("evil.example:{port}"),
        format!("127.0.0.1:{}", port.wrapping_add(1)),
        String::new(),
    ] {
        let r = raw(
            gw,
            &format!("GET /members?t=json HTTP/1.1\r\nhost: {host}"),
            b"",
        )
        .await;
        assert_eq!(r.status, 421, "Host {host:?}: {}", r.text());
        assert!(!r.text().contains("alive"), "no data for a foreign host");
        assert_safe(&r, "421");
    }
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let r = raw(
            gw,
            &format!("GET /members?t=json HTTP/1.1\r\nhost: {host}"),
            b"",
        )
        .await;
        assert_eq!(r.status, 200, "Host {host}");
    }
    let r = raw(
        gw,
        &format!("GET http://evil.example:{port}/ HTTP/1.1\r\nhost: 127.0.0.1:{port}"),
        b"",
    )
    .await;
    assert_eq!(r.status, 421, "the absolute form's host is checked too");
    // A name listed in gateway_hosts is accepted.
    let mut s = settings();
    s.hosts = vec!["grid.example".into()];
    let (gw2, _t2) = gateway(&g, s).await;
    let r = raw(gw2, "GET / HTTP/1.1\r\nhost: grid.example", b"").await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_localhost_uploads_need_the_token() {
    // Node 0 serves the gateway from its configuration, on every interface.
    let g = grid::grid(3, Some("0.0.0.0:0".parse().unwrap())).await;
    let addr = g.node(0).gateway_addr().expect("a gateway from the config");
    let gw: std::net::SocketAddr = ([127, 0, 0, 1], addr.port()).into();
    let token = std::fs::read_to_string(g.dirs[0].api_token_path()).unwrap();
    let token = token.trim();
    let q = "/uri?k=2&n=3&happy=3";
    let r = req(
        gw,
        "PUT",
        q,
        &[],
        b"some bytes, more than a literal holds........................",
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.header("www-authenticate"), Some("tahoe-lafs"));
    assert!(r.text().contains("api_auth_token"));
    let r = req(gw, "PUT", q, &[("authorization", "tahoe-lafs wrong")], b"x").await;
    assert_eq!(r.status, 401);
    let auth = format!("tahoe-lafs {token}");
    let file = data(70_000, 5);
    let r = req(gw, "PUT", q, &[("authorization", &auth)], &file).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let cap = r.text();
    // Reading spends no space: no token needed.
    assert!(get(gw, &format!("/uri/{}", enc(&cap))).await.body == file);
    // The form: the token as a field before the file.
    let (ct, body) = form(&[("token", token)], "f.bin", &file);
    let r = req(
        gw,
        "POST",
        &format!("{q}&t=upload"),
        &[("content-type", &ct)],
        &body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (ct, body) = form(&[], "f.bin", &file);
    let r = req(
        gw,
        "POST",
        &format!("{q}&t=upload"),
        &[("content-type", &ct)],
        &body,
    )
    .await;
    assert_eq!(r.status, 401);
    // Repair will spend space: it needs the token; a check does not.
    let path = format!("/uri/{}?t=check&output=JSON", enc(&cap));
    assert_eq!(req(gw, "POST", &path, &[], b"").await.status, 200);
    let r = req(gw, "POST", &format!("{path}&repair=true"), &[], b"").await;
    assert_eq!(r.status, 401);
    let r = req(
        gw,
        "POST",
        &format!("{path}&repair=true"),
        &[("authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    // The page asks for the token.
    assert!(get(gw, "/").await.text().contains("name=\"token\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_get_bounded_answers() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let g = grid::grid(4, None).await;
    let (gw, _task) = gateway(&g, settings()).await;
    let bounded = Duration::from_secs(20);

    // Huge headers, a huge request line, too many headers.
    let big = "x".repeat(100_000);
    let r = req(gw, "GET", "/", &[("x-big", &big)], b"").await;
    assert_eq!(r.status, 431);
    let r = get(gw, &format!("/uri/{big}")).await;
    assert!(r.status == 414 || r.status == 431, "{}", r.status);
    let many: Vec<(String, String)> = (0..200).map(|i| (format!("x-h{i}"), "v".into())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(req(gw, "GET", "/", &many, b"").await.status, 431);

    // A head that never ends, and an idle connection: closed by the
    // header timeout (2 s here).
    for partial in ["GET / HTTP/1.1\r\nhost: x", ""] {
        let mut s = tokio::net::TcpStream::connect(gw).await.unwrap();
        s.write_all(partial.as_bytes()).await.unwrap();
        let t = Instant::now();
        let mut buf = Vec::new();
        tokio::time::timeout(bounded, s.read_to_end(&mut buf))
            .await
            .expect("the gateway closes a connection whose head does not come")
            .ok();
        assert!(t.elapsed() < bounded);
    }

    // A body that stops, and one that drips: 408.
    let mut s = tokio::net::TcpStream::connect(gw).await.unwrap();
    s.write_all(format!("PUT /uri HTTP/1.1\r\nhost: {gw}\r\ncontent-length: 100000\r\nconnection: close\r\n\r\n0123456789").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(bounded, s.read_to_end(&mut out))
        .await
        .unwrap()
        .ok();
    let r = grid::parse(&out);
    assert_eq!(r.status, 408, "{}", r.text());
    assert!(r.text().contains("too slowly"));
    let mut s = tokio::net::TcpStream::connect(gw).await.unwrap();
    s.write_all(format!("PUT /uri HTTP/1.1\r\nhost: {gw}\r\ncontent-length: 100000\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let t = Instant::now();
    let drip = async {
        // A byte every half second: never idle two seconds, far below the
        // minimum rate once past the grace.
        for _ in 0..100 {
            if s.write_all(b"x").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            let mut probe = [0u8; 1];
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(1), s.peek(&mut probe)).await
            {
                if n > 0 {
                    break;
                }
            }
        }
    };
    drip.await;
    let mut out = Vec::new();
    tokio::time::timeout(bounded, s.read_to_end(&mut out))
        .await
        .unwrap()
        .ok();
    assert_eq!(grid::parse(&out).status, 408);
    assert!(t.elapsed() < bounded, "cut off in {:?}", t.elapsed());

    // A multipart body with no boundary in it: refused as soon as the
    // parser would hold more than a MiB of it, while the body is still
    // coming (without the bound it would buffer it all, and here wait for
    // the rest until the idle timeout's 408).
    let mut s = tokio::net::TcpStream::connect(gw).await.unwrap();
    s.write_all(format!("POST /uri?t=upload HTTP/1.1\r\nhost: {gw}\r\ncontent-type: multipart/form-data; boundary=nowhere\r\ncontent-length: 50000000\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let _ = s.write_all(&vec![b'j'; 2 * MIB]).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(bounded, s.read_to_end(&mut out))
        .await
        .unwrap();
    let r = grid::parse(&out);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("form without data"), "{}", r.text());

    // A download whose client never reads: the gateway lets go of it (its
    // operation ends) within the stall time, not when the client leaves.
    let cap = req(gw, "PUT", "/uri", &[], &data(24 * MIB, 6)).await.text();
    let mut s = tokio::net::TcpStream::connect(gw).await.unwrap();
    s.write_all(format!("GET /uri/{} HTTP/1.1\r\nhost: {gw}\r\n\r\n", enc(&cap)).as_bytes())
        .await
        .unwrap();
    wait_for("the download to start", 20, || async {
        !get(gw, "/status?t=json").await.json()["active"]
            .as_array()
            .unwrap()
            .is_empty()
    })
    .await;
    wait_for("the stalled download to be ended", 30, || async {
        get(gw, "/status?t=json").await.json()["active"]
            .as_array()
            .unwrap()
            .is_empty()
    })
    .await;
    let j = get(gw, "/status?t=json").await.json();
    assert_eq!(j["recent"][0]["type"], "download");
    assert_eq!(j["recent"][0]["status"], "failed", "{j}");
    drop(s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_gets_at_once_are_all_answered() {
    let g = grid::grid(4, None).await;
    let (gw, _task) = gateway(&g, settings()).await;
    let file = data(30_000, 8);
    let cap = req(gw, "PUT", "/uri", &[], &file).await.text();
    let path = format!("/uri/{}", enc(&cap));
    let gets: Vec<_> = (0..200)
        .map(|_| {
            let p = path.clone();
            tokio::spawn(async move { get(gw, &p).await })
        })
        .collect();
    for h in gets {
        let r = h.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.body == file);
    }
}
