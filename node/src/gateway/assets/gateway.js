// grapevine gateway: keeps the welcome page's figures fresh. Every value
// from a member (nickname, address, version) goes in as text (textContent),
// never as markup. Loaded from the gateway itself; it talks only to it.
"use strict";

(function () {
  const REFRESH_MS = 2000;

  function humanBytes(b) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let v = b, u = 0;
    while (v >= 1024 && u + 1 < units.length) { v /= 1024; u += 1; }
    return u === 0 ? b + " B" : v.toFixed(1) + " " + units[u];
  }

  function humanSecs(s) {
    s = Math.max(0, s);
    if (s < 60) return s.toFixed(1) + " s";
    if (s < 3600) return (s / 60).toFixed(0) + " min";
    if (s < 86400) return (s / 3600).toFixed(1) + " h";
    return (s / 86400).toFixed(1) + " d";
  }

  function cell(cls, text) {
    const td = document.createElement("td");
    td.className = cls;
    td.textContent = text;
    return td;
  }

  function row(m) {
    const tr = document.createElement("tr");
    tr.dataset.id = m.id;
    tr.dataset.state = m.state;
    tr.className = "state-" + m.state;
    const nick = cell("nickname", m.nickname || "");
    if (m.self) {
      const s = document.createElement("span");
      s.className = "self";
      s.textContent = "(this node)";
      nick.append(" ", s);
    }
    tr.append(nick);
    const id = document.createElement("td");
    id.className = "id";
    const code = document.createElement("code");
    code.title = m.id;
    code.textContent = m.short;
    id.append(code);
    tr.append(id);
    tr.append(cell("address", m.address));
    const st = document.createElement("td");
    st.className = "state";
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = m.state;
    st.append(badge);
    tr.append(st);
    tr.append(cell("capacity num", humanBytes(m.capacity_mib * 1048576)));
    tr.append(cell("free num", humanBytes(m.free_mib * 1048576)));
    tr.append(cell("heard num", m.self ? "now" : humanSecs(m.last_heard_s) + " ago"));
    return tr;
  }

  function set(id, text) {
    const el = document.getElementById(id);
    if (el) el.textContent = text;
  }

  async function refreshMembers(tbody) {
    const r = await fetch("/members?t=json", { credentials: "same-origin", cache: "no-store" });
    if (!r.ok) return;
    const v = await r.json();
    tbody.replaceChildren(...v.members.map(row));
    for (const s of ["alive", "suspect", "dead", "left"]) set("count-" + s, String(v.counts[s]));
  }

  async function refreshNode() {
    const r = await fetch("/statistics?t=json", { credentials: "same-origin", cache: "no-store" });
    if (!r.ok) return;
    const s = (await r.json()).stats;
    set("st-uptime", humanSecs(s["node.uptime"]));
    set("st-records", String(s["grapevine.records"]));
    set("st-sessions", String(s["grapevine.sessions_open"]));
    set("st-stored", humanBytes(s["storage_server.disk_used"]));
    set("st-available", humanBytes(s["storage_server.disk_avail"]));
    set("st-requests", String(s["grapevine.storage_requests"]));
  }

  function start() {
    const table = document.getElementById("members");
    if (!table) return;
    const tbody = table.tBodies[0];
    const tick = () => {
      refreshMembers(tbody).catch(() => {});
      refreshNode().catch(() => {});
    };
    setInterval(tick, REFRESH_MS);
  }

  document.addEventListener("DOMContentLoaded", start);
})();
