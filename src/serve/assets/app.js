// strata serve: the page. One view per URL path; every name from an image is put in the
// page as text (never as HTML), so a hostile name renders inert.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const view = () => $("#view");

// Element builder: el("a", {href: "/", class: "x"}, "text", child...). Strings become text nodes.
function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "dataset") Object.assign(e.dataset, v);
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const k of kids.flat()) {
    if (k === null || k === undefined || k === false) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}

// Control and bidirectional-override characters shown as visible escapes: a name cannot
// reorder the text around it or hide part of itself.
const HIDDEN = /[\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]/g;
function shown(name) {
  const out = el("span", { class: "name" });
  let last = 0;
  for (const m of name.matchAll(HIDDEN)) {
    if (m.index > last) out.append(name.slice(last, m.index));
    const code = m[0].codePointAt(0).toString(16).toUpperCase().padStart(4, "0");
    out.append(el("span", { class: "ctl", title: "hidden character" }, `\\u${code}`));
    last = m.index + m[0].length;
  }
  if (last < name.length) out.append(name.slice(last));
  return out;
}
function plain(name) { return name.replace(HIDDEN, (c) => `\\u${c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}`); }

function bytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KB", "MB", "GB", "TB", "PB"];
  let i = 0, v = n;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return i === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}
function pad(n) { return String(n).padStart(2, "0"); }
function when(secs) {
  if (secs === null || secs === undefined) return "";
  const d = new Date(secs * 1000);
  if (isNaN(d)) return "";
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}
const created = (s) => Date.parse(s) / 1000;

// Paths inside an image: "/p2/a b" <-> "/p2/a%20b" in URLs, one segment at a time.
const enc = (path) => path.split("/").filter(Boolean).map(encodeURIComponent).join("/");
const join = (dir, name) => (dir.endsWith("/") ? dir : dir + "/") + name;
const parent = (path) => { const p = path.replace(/\/+$/, ""); return p.slice(0, p.lastIndexOf("/")) || "/"; };
const base = (path) => path.replace(/\/+$/, "").split("/").pop();
const browseUrl = (id, path) => `/browse/${id}/${enc(path)}`;
const rawUrl = (id, path, extra = "") => `/raw/${id}/${enc(path)}${extra}`;

class HttpError extends Error {
  constructor(status, text, damaged) { super(text); this.status = status; this.damaged = damaged; }
}
async function api(url) {
  const r = await fetch(url, { credentials: "same-origin" });
  if (!r.ok) throw new HttpError(r.status, (await r.text()).trim() || r.statusText, r.headers.get("x-strata-damaged") === "1");
  return r.json();
}

function crumbs(parts) {
  const nav = $("#crumbs");
  nav.replaceChildren();
  parts.forEach(([label, href], i) => {
    if (i) nav.append(el("span", { class: "sep" }, "/"));
    nav.append(href ? el("a", { href }, shown(label)) : el("span", {}, shown(label)));
  });
}

function errorBox(e) {
  const msg = e instanceof HttpError && e.damaged ? `Damaged: ${e.message}` : e.message || String(e);
  return el("div", { id: "error", class: "error", role: "alert" }, msg);
}

function notes(n) {
  if (!n) return null;
  const out = [];
  if (n.walked && n.walked.length)
    out.push(el("div", { class: "note" }, `${n.walked.length} point(s) have no catalog and were read file by file (slower): ${n.walked.map(plain).join(", ")}`));
  for (const w of n.warnings || []) out.push(el("div", { class: "note" }, w));
  return out;
}

// ---- the backup sets --------------------------------------------------------------------

let setsCache = null;
async function sets(fresh = false) {
  if (!setsCache || fresh) setsCache = await api("/api/sets");
  return setsCache;
}
function setOf(all, id) { return all.sets.find((s) => s.images.some((i) => i.id === id)); }

function timeline(set) {
  const times = set.images.map((i) => created(i.created));
  const lo = Math.min(...times), hi = Math.max(...times);
  const span = hi - lo || 1;
  const line = el("div", { class: "timeline", "aria-label": "Points in time" });
  line.append(el("span", { class: "label", style: null }, when(lo)));
  const right = el("span", { class: "label" }, when(hi));
  right.style.right = "0";
  line.append(right);
  for (const i of set.images) {
    const at = set.images.length === 1 ? 50 : ((created(i.created) - lo) / span) * 100;
    const dot = el("a", { href: `/point/${i.id}`, class: i.kind === "full" ? "full" : "", title: `${when(created(i.created))} ${i.kind} ${plain(i.name)}` });
    dot.style.left = `${Math.max(1, Math.min(99, at))}%`;
    line.append(dot);
  }
  return line;
}

async function showSets() {
  crumbs([["Backups", null]]);
  const all = await sets(true);
  const out = [el("h1", {}, "Backups")];
  if (!all.sets.length && !all.broken.length) out.push(el("p", { class: "muted" }, "No images found."));
  for (const s of all.sets) {
    const rows = s.images.slice().reverse().map((i) =>
      el("tr", { class: "point-row" },
        el("td", {}, el("a", { href: `/point/${i.id}`, class: "point-link", dataset: { imageId: i.id } }, when(created(i.created)))),
        el("td", {}, el("span", { class: "badge" + (i.kind === "full" ? " good" : "") }, i.kind)),
        el("td", { class: "wide" }, shown(i.name)),
        el("td", { class: "num" }, bytes(i.image_bytes)),
        el("td", {}, el("a", { href: browseUrl(i.id, "/") }, "Browse"))));
    out.push(el("section", { class: "panel set" },
      el("h2", {}, shown(s.source || "disk"), " ", el("span", { class: "muted" }, `${bytes(s.disk_bytes)} disk · ${s.images.length} point(s) · ${plain(s.root)}`)),
      timeline(s),
      el("table", { class: "list" },
        el("thead", {}, el("tr", {}, el("th", {}, "Date"), el("th", {}, "Type"), el("th", { class: "wide" }, "Image"), el("th", { class: "num" }, "Size"), el("th", {}, ""))),
        el("tbody", {}, rows))));
  }
  if (all.broken.length) {
    out.push(el("h2", {}, "Images that cannot be opened"));
    out.push(el("table", { class: "list", id: "broken" },
      el("tbody", {}, all.broken.map((b) => el("tr", { class: "broken-row" },
        el("td", {}, shown(b.name)), el("td", {}, el("span", { class: "badge bad" }, "broken chain")), el("td", {}, b.error))))));
  }
  view().replaceChildren(...out);
}

// ---- one point --------------------------------------------------------------------------

async function showPoint(id) {
  const p = await api(`/api/point/${id}`);
  $("#search-scope").value = id;
  crumbs([["Backups", "/"], [`${when(created(p.created))} · ${p.name}`, null]]);
  const facts = el("dl", { class: "facts" },
    el("dt", {}, "Created"), el("dd", {}, when(created(p.created))),
    el("dt", {}, "Type"), el("dd", {}, p.kind + (p.content === "clone" ? " (every sector)" : " (used blocks)")),
    el("dt", {}, "Image file"), el("dd", {}, shown(p.name)),
    el("dt", {}, "Source"), el("dd", {}, shown(p.source)),
    el("dt", {}, "Disk"), el("dd", {}, `${bytes(p.disk_bytes)}, ${p.sector_size}-byte sectors`),
    el("dt", {}, "Stored"), el("dd", {}, `${bytes(p.data_bytes)} in a ${bytes(p.image_bytes)} file (${p.compression}, ${p.chunks} chunks)`),
    el("dt", {}, "Catalog"), el("dd", {}, p.catalog ? (p.catalog.error ? `damaged: ${p.catalog.error}` : `${p.catalog.entries} entries`) : "none (search reads the files)"));
  const out = [el("h1", {}, `Backup of ${when(created(p.created))}`), el("div", { class: "panel" }, facts)];
  if (p.chain_error) out.push(el("div", { class: "error" }, `Chain broken: ${p.chain_error}`));
  if (p.open_error) out.push(el("div", { class: "error" }, p.open_error));
  if (p.unreadable_bytes) out.push(el("div", { class: "note" }, `${bytes(p.unreadable_bytes)} could not be read from the source when the image was made (they read as zeros).`));
  const parts = (p.layout && p.layout.partitions) || [];
  out.push(el("h2", {}, "Partitions"));
  out.push(el("table", { class: "list", id: "partitions" },
    el("thead", {}, el("tr", {}, el("th", {}, "Partition"), el("th", {}, "Filesystem"), el("th", {}, "Label"), el("th", { class: "num" }, "Size"), el("th", { class: "num wide" }, "Used"), el("th", { class: "wide" }, "Imaged"))),
    el("tbody", {}, p.mounts.map((m) => {
      const r = parts.find((x) => x.number === m.number) || {};
      const label = m.name || "volume";
      return el("tr", {},
        el("td", {}, m.error ? shown(label) : el("a", { href: browseUrl(id, "/" + m.name) }, shown(label))),
        el("td", {}, m.fs || "—", m.error ? el("div", { class: m.damaged ? "badge bad" : "badge warn" }, m.error) : null),
        el("td", {}, shown(m.label || "")),
        el("td", { class: "num" }, bytes(m.size)),
        el("td", { class: "num wide" }, r.used_bytes !== undefined ? bytes(r.used_bytes) : ""),
        el("td", { class: "wide" }, !r.imaging ? "" : r.imaging.mode === "used_blocks" ? "used blocks" : `every block${r.imaging.reason ? ": " + r.imaging.reason : ""}`));
    }))));
  if (p.chain && p.chain.length) {
    out.push(el("h2", {}, "Chain"));
    out.push(el("table", { class: "list" }, el("tbody", {}, p.chain.map((c) => el("tr", {},
      el("td", {}, c.id ? el("a", { href: `/point/${c.id}` }, when(created(c.created))) : when(created(c.created))),
      el("td", {}, c.kind), el("td", {}, shown(c.name || "")), el("td", { class: "num" }, bytes(c.image_bytes)))))));
  }
  out.push(el("div", { class: "toolbar" },
    el("a", { class: "button primary", href: browseUrl(id, "/") }, "Browse files"),
    el("a", { class: "button", href: `/diff?b=${id}` }, "Compare with another point")));
  view().replaceChildren(...out);
}

// ---- a directory ------------------------------------------------------------------------

const KIND_ORDER = { dir: 0, symlink: 1, file: 2 };
const iconClass = (e) => e.error ? "bad" : ["dir", "file", "symlink"].includes(e.type) ? e.type : "other";

function listing(id, path, entries) {
  let sortKey = "name", desc = false, filter = "";
  let rows = entries;
  const count = el("span", { id: "entry-count", class: "muted" });
  const body = el("div", { id: "rows", role: "rowgroup" });
  const spacer = el("div", { class: "spacer" });
  body.append(spacer);
  const head = el("div", { class: "grid head", role: "row" }, el("span"));
  for (const [key, label, cls] of [["name", "Name", ""], ["size", "Size", "num"], ["mtime", "Modified", "when"], ["type", "Type", "kind"]]) {
    const b = el("button", { type: "button", dataset: { sort: key } }, label);
    b.addEventListener("click", () => { desc = sortKey === key ? !desc : false; sortKey = key; apply(); });
    head.append(el("span", { class: cls, role: "columnheader" }, b));
  }
  const cmp = {
    name: (a, b) => a.name.localeCompare(b.name, undefined, { numeric: true, sensitivity: "base" }),
    size: (a, b) => (a.size || 0) - (b.size || 0),
    mtime: (a, b) => (a.mtime || 0) - (b.mtime || 0),
    type: (a, b) => (KIND_ORDER[a.type] ?? 9) - (KIND_ORDER[b.type] ?? 9),
  };
  function apply() {
    const f = filter.toLowerCase();
    rows = entries.filter((e) => !f || e.name.toLowerCase().includes(f));
    const c = cmp[sortKey];
    // Directories first, as file managers list them; then the chosen column.
    rows.sort((a, b) => ((a.type === "dir") === (b.type === "dir") ? 0 : a.type === "dir" ? -1 : 1) || (desc ? -c(a, b) : c(a, b)) || cmp.name(a, b));
    for (const b of head.querySelectorAll("button")) {
      if (b.dataset.sort === sortKey) b.setAttribute("aria-sort", desc ? "descending" : "ascending");
      else b.removeAttribute("aria-sort");
    }
    count.textContent = rows.length === entries.length ? `${entries.length} entries` : `${rows.length} of ${entries.length} entries`;
    spacer.style.height = `${rows.length * ROW}px`;
    body.scrollTop = 0;
    drawn = [-1, -1];
    draw();
  }
  // Only the rows in view (and a margin) exist in the page: a directory of 100,000
  // entries scrolls as fast as one of ten.
  const ROW = 34;
  let drawn = [-1, -1];
  function draw() {
    const first = Math.max(0, Math.floor(body.scrollTop / ROW) - 20);
    const last = Math.min(rows.length, Math.ceil((body.scrollTop + body.clientHeight) / ROW) + 20);
    if (first === drawn[0] && last === drawn[1]) return;
    drawn = [first, last];
    const frag = document.createDocumentFragment();
    for (let i = first; i < last; i++) frag.append(row(rows[i], i));
    spacer.replaceChildren(frag);
  }
  function row(e, i) {
    const p = join(path, e.name);
    const href = browseUrl(id, p);
    const r = el("div", { class: "entry grid", role: "row", dataset: { name: e.name, type: e.type } },
      el("span", { class: `icon ${iconClass(e)}`, "aria-hidden": "true" }),
      el("a", { class: "name", href, title: plain(e.name) }, shown(e.name)),
      el("span", { class: "num" }, e.type === "dir" ? "" : bytes(e.size)),
      el("span", { class: "when" }, when(e.mtime)),
      el("span", { class: "kind" }, e.error ? el("span", { class: "badge bad", title: e.error }, "unreadable") : e.type === "symlink" ? `→ ${plain(e.target || "")}` : e.fs || e.type));
    r.style.top = `${i * ROW}px`;
    return r;
  }
  body.addEventListener("scroll", () => requestAnimationFrame(draw), { passive: true });
  const filterBox = el("input", { class: "filter", id: "filter", type: "search", placeholder: "Filter this folder", "aria-label": "Filter this folder" });
  filterBox.addEventListener("input", () => { filter = filterBox.value; apply(); });
  const box = el("div", { id: "listing", role: "table" }, head, body);
  setTimeout(apply, 0);
  return { box, count, filterBox };
}

async function showPath(id, path) {
  const [all, res] = await Promise.all([sets(), api(`/api/ls/${id}/${enc(path)}`)]);
  const set = setOf(all, id);
  const img = set && set.images.find((i) => i.id === id);
  $("#search-scope").value = id;
  const trail = [["Backups", "/"], [img ? when(created(img.created)) : id, `/point/${id}`], ["files", browseUrl(id, "/")]];
  let acc = "";
  for (const seg of path.split("/").filter(Boolean)) { acc += "/" + seg; trail.push([seg, browseUrl(id, acc)]); }
  trail[trail.length - 1][1] = null;
  crumbs(trail);
  if (res.type === "dir") return showDir(id, path, res);
  return showFile(id, path, res, set);
}

function showDir(id, path, res) {
  document.body.dataset.view = "dir";
  const title = path === "/" ? "Partitions" : base(path);
  const { box, count, filterBox } = listing(id, path, res.entries);
  const tools = el("div", { class: "toolbar" }, filterBox, count);
  tools.append(checkButton(id, path));
  if (!res.top) {
    tools.append(el("a", { class: "button", id: "zip", href: `/zip/${id}/${enc(path)}`, download: "" }, "Download .zip"));
    tools.append(el("a", { class: "button", id: "tar", href: `/tar/${id}/${enc(path)}`, download: "" }, "Download .tar"));
  }
  const out = [el("h1", {}, shown(title)), tools, box];
  const bad = res.entries.filter((e) => e.error);
  if (bad.length) out.splice(1, 0, el("div", { class: "error" }, `${bad.length} entr${bad.length === 1 ? "y" : "ies"} cannot be read: ${bad.slice(0, 5).map((e) => plain(e.name) + " (" + e.error + ")").join("; ")}`));
  view().replaceChildren(...out);
}

// Reads everything below a path on the server and lists what cannot be read.
function checkButton(id, path) {
  const out = el("span", { id: "check-result", class: "muted", "aria-live": "polite" });
  const b = el("button", { type: "button", class: "button", id: "check" }, "Check readability");
  b.addEventListener("click", async () => {
    b.disabled = true;
    out.replaceChildren("Reading every file…");
    try {
      const r = await api(`/api/check/${id}/${enc(path)}`);
      if (!r.unreadable.length) out.replaceChildren(el("span", { class: "badge good", id: "check-ok" }, `all ${r.files} file(s) readable (${bytes(r.bytes)})`));
      else out.replaceChildren(el("div", { class: "error", id: "check-bad" }, `${r.unreadable.length} unreadable:`,
        el("ul", {}, r.unreadable.map((u) => el("li", { class: "unreadable", dataset: { path: u.path } }, shown(u.path), ` — ${u.damaged ? "damaged: " : ""}${u.error}`)))));
    } catch (e) { out.replaceChildren(errorBox(e)); }
    b.disabled = false;
  });
  return el("span", { class: "check" }, b, " ", out);
}

// ---- a file -----------------------------------------------------------------------------

const PICTURES = /\.(png|jpe?g|gif|webp|bmp|ico)$/i;

// The encoding a text preview is shown in, or null for binary data.
function decodeText(buf) {
  const b = new Uint8Array(buf);
  if (b.length >= 2 && ((b[0] === 0xff && b[1] === 0xfe) || (b[0] === 0xfe && b[1] === 0xff))) {
    const le = b[0] === 0xff;
    return { enc: le ? "UTF-16 LE" : "UTF-16 BE", text: new TextDecoder(le ? "utf-16le" : "utf-16be").decode(b.subarray(2)) };
  }
  if (b.includes(0)) return null;
  try {
    // A multi-byte character cut at the end of the preview is not a decoding error.
    const text = new TextDecoder("utf-8", { fatal: true }).decode(b.subarray(0, trimUtf8(b)));
    return { enc: b[0] === 0xef && b[1] === 0xbb ? "UTF-8 with BOM" : /^[\x00-\x7f]*$/.test(text) ? "ASCII" : "UTF-8", text };
  } catch {
    const bad = b.filter((x) => x < 9 || (x > 13 && x < 32)).length;
    if (bad > b.length / 100) return null;
    return { enc: "Windows-1252", text: new TextDecoder("windows-1252").decode(b) };
  }
}
function trimUtf8(b) {
  let n = b.length;
  for (let i = 1; i <= 3 && n - i >= 0; i++) {
    const c = b[n - i];
    if ((c & 0xc0) === 0xc0) { const need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2; return need > i ? n - i : n; }
    if ((c & 0x80) === 0) return n;
  }
  return n;
}
function hexView(buf, offset) {
  const b = new Uint8Array(buf);
  const lines = [];
  for (let i = 0; i < b.length; i += 16) {
    const row = b.subarray(i, i + 16);
    const hex = Array.from(row, (x) => x.toString(16).padStart(2, "0")).join(" ").padEnd(47);
    const asc = Array.from(row, (x) => (x >= 32 && x < 127 ? String.fromCharCode(x) : ".")).join("");
    lines.push(`${(offset + i).toString(16).padStart(8, "0")}  ${hex}  ${asc}`);
  }
  return lines.join("\n");
}

const PREVIEW_BYTES = 65536;
async function preview(id, path, size) {
  const box = el("div", { id: "preview" });
  if (size === 0) { box.append(el("p", { class: "muted" }, "Empty file.")); return box; }
  if (PICTURES.test(path)) {
    const img = el("img", { class: "preview", alt: `Preview of ${plain(base(path))}`, src: rawUrl(id, path) });
    box.append(img);
    return box;
  }
  const r = await fetch(rawUrl(id, path), { headers: { Range: `bytes=0-${PREVIEW_BYTES - 1}` } });
  if (!r.ok) {
    box.append(errorBox(new HttpError(r.status, (await r.text()).trim(), r.headers.get("x-strata-damaged") === "1")));
    return box;
  }
  const buf = await r.arrayBuffer();
  const more = size > buf.byteLength ? ` (first ${bytes(buf.byteLength)} of ${bytes(size)})` : "";
  const t = decodeText(buf);
  if (t) {
    box.append(el("p", { class: "muted", id: "encoding" }, `Text, ${t.enc}${more}`));
    box.append(el("pre", { class: "preview text" }, t.text));
  } else {
    box.append(el("p", { class: "muted", id: "encoding" }, `Binary data, shown in hex${more}`));
    box.append(el("pre", { class: "preview hex" }, hexView(buf.slice(0, 4096), 0)));
  }
  return box;
}

async function showFile(id, path, m, set) {
  document.body.dataset.view = "file";
  const name = base(path);
  const facts = el("dl", { class: "facts" });
  const fact = (k, v) => { if (v !== null && v !== undefined && v !== "") facts.append(el("dt", {}, k), el("dd", {}, v)); };
  fact("Type", m.type);
  if (m.type === "symlink") fact("Points to", shown(m.target || ""));
  fact("Size", `${bytes(m.size)} (${m.size.toLocaleString()} bytes)`);
  if (m.allocated !== null && m.allocated !== m.size) fact("On disk", bytes(m.allocated));
  fact("Modified", when(m.mtime));
  fact("Created", when(m.crtime));
  fact("Changed", when(m.ctime));
  fact("Accessed", when(m.atime));
  if (m.mode !== null) fact("Mode", (m.mode & 0o7777).toString(8).padStart(4, "0"));
  if (m.uid !== null) fact("Owner", `${m.uid}:${m.gid}`);
  if (m.ino !== null) fact("Inode / record", m.ino);
  if (m.nlink !== null && m.nlink > 1) fact("Links", m.nlink);
  const readable = m.type === "file" || m.type === "reparse";
  const tools = el("div", { class: "toolbar" });
  if (readable) tools.append(el("a", { class: "button primary", id: "download", href: rawUrl(id, path, "?dl=1"), download: plain(name) }, "Download"));
  tools.append(el("a", { class: "button", id: "versions", href: `/history/${id}/${enc(path)}` }, "All versions"));
  tools.append(el("a", { class: "button", href: browseUrl(id, parent(path)) }, "Open folder"));
  if (readable) tools.append(checkButton(id, path));
  const out = [el("h1", { id: "file-name" }, shown(name)), tools, el("div", { class: "panel" }, facts)];
  if (m.streams && m.streams.length) {
    out.push(el("h2", {}, "Named streams"));
    out.push(el("ul", { id: "streams" }, m.streams.map((s) => el("li", {}, shown(s.name), ` — ${bytes(s.size)} `,
      el("a", { href: rawUrl(id, path, `?dl=1&stream=${encodeURIComponent(s.name)}`) }, "download")))));
  }
  if (m.xattrs && m.xattrs.length) {
    out.push(el("h2", {}, "Extended attributes"));
    out.push(el("ul", { id: "xattrs" }, m.xattrs.map((x) => el("li", {}, shown(x.name), x.value !== null ? el("span", { class: "muted" }, " = ", shown(x.value)) : null))));
  }
  view().replaceChildren(...out);
  if (readable) {
    out.push(el("h2", {}, "Preview"));
    const p = await preview(id, path, m.size);
    view().append(out[out.length - 1], p);
  }
}

// ---- search, versions, differences ------------------------------------------------------

async function showSearch(params) {
  document.body.dataset.view = "search";
  const q = params.get("q") || "";
  const scope = params.get("scope") || "";
  $("#search-box").value = q;
  $("#search-scope").value = scope;
  crumbs([["Backups", "/"], ["Search", null]]);
  const form = el("form", { class: "toolbar", id: "search-page", action: "/search", method: "get" },
    el("input", { type: "text", name: "q", value: q, "aria-label": "Pattern" }),
    el("label", {}, el("input", { type: "checkbox", name: "i", value: "1", checked: params.get("i") === "1" }), " ignore case"),
    el("select", { name: "type", "aria-label": "Type" }, ["", "f", "d", "l"].map((t) => el("option", { value: t, selected: params.get("type") === t }, { "": "any type", f: "files", d: "folders", l: "links" }[t]))),
    el("select", { name: "scope", "aria-label": "Where" }, el("option", { value: scope }, scope ? "this backup set" : "every backup"), scope ? el("option", { value: "" }, "every backup") : null),
    el("button", { class: "button primary", type: "submit" }, "Search"));
  const out = [el("h1", {}, "Search"), form];
  if (!q) { view().replaceChildren(...out); return; }
  const qs = new URLSearchParams({ q, scope, i: params.get("i") || "", type: params.get("type") || "" });
  const res = await api(`/api/find?${qs}`);
  out.push(...(notes(res.notes) || []));
  out.push(el("p", { class: "muted", id: "result-count" }, `${res.total} match(es) in ${res.points} point(s)${res.total > res.rows.length ? `, first ${res.rows.length} shown` : ""}. A bare word matches names containing it; * ? [ ] are wildcards.`));
  // One row per path and version: a file unchanged over 30 points is one row, not 30.
  const groups = new Map();
  for (const r of res.rows) {
    // A folder's time follows its entries: one row per folder, dated by its newest point.
    const key = r.type === "dir" ? `${r.path}\0dir` : [r.path, r.type, r.size, r.mtime].join("\0");
    if (!groups.has(key)) groups.set(key, { ...r, points: [] });
    const g = groups.get(key);
    g.points.push(r);
    g.mtime = r.mtime;
  }
  const rows = [...groups.values()].sort((x, y) => (x.path < y.path ? -1 : x.path > y.path ? 1 : x.point - y.point));
  out.push(el("table", { class: "list", id: "results" },
    el("thead", {}, el("tr", {}, el("th", {}, "Path"), el("th", { class: "num" }, "Size"), el("th", { class: "wide" }, "Modified"), el("th", {}, "In points"), el("th", {}, ""))),
    el("tbody", {}, rows.map((g) => {
      const first = g.points[0], last = g.points[g.points.length - 1];
      const span = g.points.length === 1 ? when(first.point) : `${when(first.point)} – ${when(last.point)} (${g.points.length})`;
      return el("tr", { class: "result", dataset: { path: g.path, image: last.id || "", images: g.points.map((p) => p.id).join(" ") } },
        el("td", {}, el("a", { href: browseUrl(last.id, g.path) }, shown(g.path))),
        el("td", { class: "num" }, g.type === "dir" ? "" : bytes(g.size)),
        el("td", { class: "wide" }, when(g.mtime)),
        el("td", { class: "when" }, el("a", { href: `/point/${last.id}` }, span)),
        el("td", {}, el("a", { href: `/history/${last.id}/${enc(g.path)}` }, "versions")));
    }))));
  view().replaceChildren(...out);
}

async function showHistory(id, path) {
  document.body.dataset.view = "history";
  crumbs([["Backups", "/"], ["Versions", null], [path, null]]);
  const res = await api(`/api/history/${id}/${enc(path)}`);
  const out = [el("h1", {}, "Versions of ", shown(path))];
  out.push(...(notes(res.notes) || []));
  if (!res.versions.length) out.push(el("p", { class: "muted" }, "This path is in none of the points."));
  out.push(el("table", { class: "list", id: "versions-list" },
    el("thead", {}, el("tr", {}, el("th", {}, "Version"), el("th", { class: "num" }, "Size"), el("th", { class: "wide" }, "Modified"), el("th", {}, "In points"), el("th", {}, ""))),
    el("tbody", {}, res.versions.map((v, n) => {
      const first = v.points[0], last = v.points[v.points.length - 1];
      const span = v.points.length === 1 ? when(first.created) : `${when(first.created)} – ${when(last.created)} (${v.points.length})`;
      if (v.deleted) return el("tr", { class: "version deleted" }, el("td", {}, el("span", { class: "badge bad" }, "absent")), el("td"), el("td", { class: "wide" }), el("td", {}, span), el("td"));
      return el("tr", { class: "version" },
        el("td", {}, `#${n + 1} `, v.id ? el("code", { class: "muted", title: v.id }, v.id.slice(0, 12)) : null),
        el("td", { class: "num" }, v.type === "dir" ? "" : bytes(v.size)),
        el("td", { class: "wide" }, when(v.mtime)),
        el("td", {}, el("a", { href: browseUrl(last.id, v.path) }, span)),
        el("td", {}, v.type === "file" ? el("a", { class: "button", href: rawUrl(last.id, v.path, "?dl=1"), download: plain(base(v.path)) }, "Download") : v.type));
    }))));
  view().replaceChildren(...out);
}

async function showDiff(params) {
  document.body.dataset.view = "diff";
  crumbs([["Backups", "/"], ["Compare", null]]);
  const all = await sets();
  const b = params.get("b") || "", a = params.get("a") || "";
  const set = setOf(all, b || a);
  const points = set ? set.images : all.sets.flatMap((s) => s.images);
  const pick = (name, cur) => el("select", { name, "aria-label": name === "a" ? "Older point" : "Newer point" },
    points.map((p) => el("option", { value: p.id, selected: p.id === cur }, `${when(created(p.created))} ${p.kind}`)));
  let older = a;
  if (!older && b) { const i = points.findIndex((p) => p.id === b); older = i > 0 ? points[i - 1].id : b; }
  const form = el("form", { class: "toolbar", id: "diff-form", action: "/diff", method: "get" },
    "From ", pick("a", older), " to ", pick("b", b || (points[points.length - 1] || {}).id),
    el("input", { type: "text", name: "path", value: params.get("path") || "/", "aria-label": "Below path" }),
    el("button", { class: "button primary", type: "submit" }, "Compare"));
  const out = [el("h1", {}, "What changed"), form];
  if (a && b) {
    const res = await api(`/api/diff?${new URLSearchParams({ a, b, path: params.get("path") || "/" })}`);
    out.push(...(notes(res.notes) || []));
    out.push(el("p", { class: "muted", id: "diff-count" }, `${res.rows.length} change(s)`));
    out.push(el("table", { class: "list", id: "changes" }, el("tbody", {}, res.rows.map((r) => el("tr", { class: "change", dataset: { change: r.change, path: r.path } },
      el("td", {}, el("span", { class: `badge change-${r.change}` }, r.change + (r.modified ? " + modified" : ""))),
      el("td", {}, r.old_path ? [shown(r.old_path), " → "] : null, r.change === "removed" ? shown(r.path) : el("a", { href: browseUrl(b, r.path) }, shown(r.path)), r.stream ? [":", shown(r.stream)] : null),
      el("td", { class: "kind" }, r.type))))));
  }
  view().replaceChildren(...out);
}

// ---- routing ----------------------------------------------------------------------------

async function route() {
  document.body.dataset.ready = "0";
  const path = location.pathname;
  const params = new URLSearchParams(location.search);
  const parts = path.split("/").filter(Boolean);
  // Path segments stay encoded until here: a name may hold "/" or "%".
  const inner = (from) => "/" + parts.slice(from).map(decodeURIComponent).join("/");
  try {
    document.body.dataset.view = parts[0] || "sets";
    if (!parts.length) await showSets();
    else if (parts[0] === "point" && parts[1]) await showPoint(parts[1]);
    else if (parts[0] === "browse" && parts[1]) await showPath(parts[1], inner(2));
    else if (parts[0] === "search") await showSearch(params);
    else if (parts[0] === "history" && parts[1]) await showHistory(parts[1], inner(2));
    else if (parts[0] === "diff") await showDiff(params);
    else throw new Error("No such page.");
  } catch (e) {
    document.body.dataset.view = "error";
    view().replaceChildren(el("h1", {}, "Cannot show this"), errorBox(e), el("p", {}, el("a", { href: "/" }, "Back to the backups")));
  }
  document.title = `${$("h1") ? $("h1").textContent : ""} — strata`;
  document.body.dataset.ready = "1";
}

// Links inside the app change the view without reloading; downloads and other origins
// are left to the browser.
document.addEventListener("click", (ev) => {
  const a = ev.target.closest("a");
  if (!a || ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || a.hasAttribute("download")) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || /^\/(raw|zip|tar|api|assets)\//.test(url.pathname)) return;
  ev.preventDefault();
  history.pushState(null, "", url.pathname + url.search);
  window.scrollTo(0, 0);
  route();
});
document.addEventListener("submit", (ev) => {
  const f = ev.target;
  if (f.method !== "get") return;
  ev.preventDefault();
  const qs = new URLSearchParams(new FormData(f));
  history.pushState(null, "", `${new URL(f.action).pathname}?${qs}`);
  route();
});
window.addEventListener("popstate", route);
route();
