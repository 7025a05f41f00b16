// letterbox inspector: live list (server-sent events), search as you type,
// replay with a dry run first. No dependencies; works offline.
"use strict";

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function when(s) {
  const d = new Date(s);
  if (isNaN(d) || d.getUTCFullYear() < 1971) return "–";
  return d.toISOString().slice(0, 19).replace("T", " ");
}

// row builds a list row exactly as templates/list.html does.
function row(it) {
  const tr = el("tr", {"data-id": it.id});
  tr.append(el("td", {class: "when"}, when(it.received_at)));
  tr.append(el("td", {}, it.from));
  tr.append(el("td", {}, (it.rcpt_to || []).join(", ")));
  const subj = el("td", {class: "subject"});
  subj.append(el("a", {href: "/messages/" + encodeURIComponent(it.id)}, it.subject || "(no subject)"));
  tr.append(subj);
  tr.append(el("td", {}, (it.routes || []).join(", ")));
  const st = el("td");
  st.append(el("a", {class: "status " + it.status, href: "/messages/" + encodeURIComponent(it.id) + "/deliveries"}, it.status));
  tr.append(st);
  return tr;
}

function listPage() {
  const table = document.getElementById("messages");
  const tbody = table.querySelector("tbody");
  const q = document.getElementById("q");

  const es = new EventSource("/api/v1/events");
  // What arrived between this page's rendering and the stream's opening
  // (or while it was reconnecting) is not in the stream: load the first
  // page again once it is open.
  es.addEventListener("open", async () => {
    if (table.dataset.live !== "1") return;
    const resp = await fetch("/api/v1/messages");
    if (!resp.ok || table.dataset.live !== "1") return;
    const page = await resp.json();
    for (const it of page.items.slice().reverse()) {
      const old = tbody.querySelector('tr[data-id="' + CSS.escape(it.id) + '"]');
      if (old) { old.replaceWith(row(it)); continue; }
      const empty = document.getElementById("empty");
      if (empty) empty.remove();
      tbody.prepend(row(it));
    }
  });
  es.addEventListener("message", (ev) => {
    const it = JSON.parse(ev.data);
    const old = tbody.querySelector('tr[data-id="' + CSS.escape(it.id) + '"]');
    if (old) { old.replaceWith(row(it)); return; }
    if (table.dataset.live !== "1") return;
    const empty = document.getElementById("empty");
    if (empty) empty.remove();
    const r = row(it);
    r.classList.add("new");
    tbody.prepend(r);
  });

  // Search as you type; the form still works without JavaScript.
  let timer, seq = 0;
  q.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const mine = ++seq;
      const v = q.value.trim();
      const resp = await fetch("/api/v1/messages?q=" + encodeURIComponent(v));
      if (mine !== seq) return;
      const err = document.querySelector("p.error");
      if (!resp.ok) {
        const p = err || el("p", {class: "error"});
        p.textContent = await resp.text();
        if (!err) table.before(p);
        return;
      }
      if (err) err.remove();
      const page = await resp.json();
      tbody.replaceChildren(...page.items.map(row));
      table.dataset.live = v ? "" : "1";
      history.replaceState(null, "", v ? "/?q=" + encodeURIComponent(v) : "/");
      const older = document.getElementById("older");
      if (older) {
        if (page.next_before) older.href = "/?q=" + encodeURIComponent(v) + "&before=" + encodeURIComponent(page.next_before);
        else older.remove();
      }
    }, 250);
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "/" && document.activeElement !== q) { e.preventDefault(); q.focus(); }
  });
}

function deliveriesPage() {
  const box = document.getElementById("replay");
  if (!box) return;
  const id = box.dataset.id;
  const out = document.getElementById("replay-out");
  const dry = document.getElementById("dry-run");
  const confirm = document.getElementById("replay-confirm");
  if (!dry) return;
  const url = "/api/v1/messages/" + encodeURIComponent(id) + "/replay";

  function show(res, verb) {
    out.replaceChildren();
    if (!res.jobs.length) { out.append(el("p", {}, "No route matches this message now: nothing to replay.")); return false; }
    out.append(el("p", {}, verb));
    const ul = el("ul", {class: "jobs"});
    for (const j of res.jobs) ul.append(el("li", {}, j.kind + " for route " + j.route + " (action " + j.action + "), job " + j.id));
    out.append(ul);
    return true;
  }
  dry.addEventListener("click", async () => {
    const resp = await fetch(url + "?dry_run=1", {method: "POST"});
    if (!resp.ok) { out.textContent = await resp.text(); return; }
    if (show(await resp.json(), "A replay would queue:")) confirm.hidden = false;
  });
  confirm.addEventListener("click", async () => {
    confirm.disabled = true;
    const resp = await fetch(url, {method: "POST"});
    if (!resp.ok) { out.textContent = await resp.text(); confirm.disabled = false; return; }
    show(await resp.json(), "Queued:");
    // Show the new attempts once they are recorded.
    const before = Number(document.getElementById("records").dataset.count);
    const poll = async () => {
      const r = await fetch("/api/v1/messages/" + encodeURIComponent(id) + "/deliveries");
      const d = await r.json();
      const done = d.deliveries.length > before && d.deliveries.every((x) => x.status !== "pending");
      if (done) location.reload(); else setTimeout(poll, 500);
    };
    setTimeout(poll, 300);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "list") listPage();
  if (page === "deliveries") deliveriesPage();
});
