/* kale release browser: renders the data files (data/*.js) written by `kale browse`.
 *
 * Captions and alt-texts are untrusted web text. Every value from the data reaches the
 * page through textContent, a property (img.src, a.href after a scheme check) or a
 * number, never through innerHTML or any other HTML parser, so no text in the data
 * can become markup or script. The page also forbids inline script (its CSP).
 */
(function () {
  "use strict";

  var K = window.KALE_BROWSER || {};
  var PAGE_ROWS = 24;
  // index entry: [chunk, offset, uid, stage, status, tags, text]
  var CHUNK = 0, OFFSET = 1, UID = 2, STAGE = 3, STATUS = 4, TAGS = 5, TEXT = 6;
  var state = { q: "", stage: "", status: "", reason: "", page: 0 };
  var loading = {};
  var renders = 0;

  function byId(id) { return document.getElementById(id); }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function add(parent, child) { parent.appendChild(child); return child; }

  function fmt(value) {
    if (value === null || value === undefined) return "n/a";
    if (typeof value === "number" && !Number.isInteger(value)) return value.toFixed(3);
    return String(value);
  }

  // ------------------------------------------------------------------ data chunks

  function chunk(n) {
    var name = "chunk" + n;
    if (K[name]) return Promise.resolve(K[name]);
    if (!loading[n]) {
      loading[n] = new Promise(function (resolve, reject) {
        var s = document.createElement("script");
        s.src = "data/rows-" + String(n).padStart(4, "0") + ".js";
        s.onload = function () { K[name] ? resolve(K[name]) : reject(new Error(s.src)); };
        s.onerror = function () { delete loading[n]; reject(new Error("cannot load " + s.src)); };
        document.head.appendChild(s);
      });
    }
    return loading[n];
  }

  // ------------------------------------------------------------------ search, filters

  function matches(e, terms) {
    if (state.stage && e[STAGE] !== state.stage) return false;
    if (state.status && e[STATUS] !== state.status) return false;
    if (state.reason && e[TAGS].indexOf(state.reason) < 0) return false;
    return terms.every(function (t) {
      return e[UID].toLowerCase().indexOf(t) === 0 || e[TEXT].indexOf(t) >= 0;
    });
  }

  function hits() {
    var terms = state.q.toLowerCase().split(/\s+/).filter(Boolean);
    return (K.index || []).filter(function (e) { return matches(e, terms); });
  }

  function fillSelect(id, label, counts) {
    var select = byId(id);
    add(select, el("option", null, "any " + label)).value = "";
    Object.keys(counts || {}).forEach(function (key) {
      add(select, el("option", null, key + " (" + counts[key] + ")")).value = key;
    });
    select.addEventListener("change", function () { state[id] = select.value; state.page = 0; render(); });
  }

  // ------------------------------------------------------------------ cards

  function field(dl, label, value, cls) {
    add(dl, el("dt", null, label));
    var dd = add(dl, el("dd", cls || null, value === null || value === undefined ? "none" : value));
    if (value === null || value === undefined) dd.classList.add("muted");
    return dd;
  }

  function thumb(row) {
    var box = el("div", "thumb");
    if (row.thumb) {
      var img = add(box, el("img"));
      img.loading = "lazy";
      img.alt = "image " + row.uid;
      img.src = row.thumb;
    } else {
      box.appendChild(el("span", "muted", "no image"));
    }
    return box;
  }

  function link(url) {
    // Only web links become links: a javascript: or data: URL stays text.
    if (typeof url === "string" && /^https?:\/\//i.test(url)) {
      var a = el("a", "url", url);
      a.href = url;
      a.rel = "noopener noreferrer nofollow";
      a.target = "_blank";
      return a;
    }
    return el("span", "url", url);
  }

  function head(row, badge) {
    var h = el("div", "card-head");
    add(h, el("code", "uid", row.uid));
    if (row.stage) add(h, el("span", "badge stage", row.stage));
    add(h, el("span", "badge " + badge, badge === "rejected" ? "rejected: " + row.reject_reason : badge));
    return h;
  }

  function removed(row) {
    var box = el("div", "removed");
    add(box, el("div", "label", "removed sentences (" + row.removed.length + ")"));
    var ul = add(box, el("ul"));
    row.removed.forEach(function (pair) {
      var li = add(ul, el("li"));
      add(li, el("span", "reason", pair[1] || "unknown"));
      add(li, el("span", "sentence", pair[0]));
    });
    return box;
  }

  function quality(row) {
    var table = el("table", "quality");
    var tr1 = add(table, el("tr")), tr2 = add(table, el("tr"));
    row.quality.forEach(function (pair) {
      add(tr1, el("th", null, pair[0]));
      add(tr2, el("td", null, fmt(pair[1])));
    });
    return table;
  }

  function releaseCard(row) {
    var card = el("article", "card " + row.status);
    card.dataset.uid = row.uid;
    add(card, thumb(row));
    var body = add(card, el("div", "body"));
    add(body, head(row, row.status));
    var dl = add(body, el("dl"));
    field(dl, "alt-text", row.alt_text, "alt-text");
    field(dl, "dense caption", row.dense_caption, "dense");
    field(dl, "final caption", row.caption, "caption");
    if (row.caption_raw) field(dl, "raw caption", row.caption_raw, "raw");
    if (row.removed.length) add(body, removed(row));
    add(body, quality(row));
    var lineage = add(body, el("div", "lineage muted"));
    add(lineage, el("span", null, row.model + " / " + row.prompt_id));
    if (row.url) { add(lineage, el("span", null, " · ")); add(lineage, link(row.url)); }
    return card;
  }

  function marked(runs, cls) {
    var p = el("p", "diff-text");
    (runs || []).forEach(function (run, i) {
      if (i) p.appendChild(document.createTextNode(" "));
      add(p, run[1] ? el("mark", cls, run[0]) : el("span", null, run[0]));
    });
    return p;
  }

  function side(title, values, runs, cls) {
    var box = el("div", "side " + cls);
    add(box, el("div", "label", title));
    if (!values) { add(box, el("p", "muted", "not in this version")); return box; }
    add(box, runs ? marked(runs, cls) : el("p", "diff-text", values.caption));
    var meta = add(box, el("div", "muted"));
    meta.textContent = values.stage + " · " + values.model + " / " + values.prompt_id +
      " · " + values.word_count + " words";
    return box;
  }

  function diffCard(row) {
    var card = el("article", "card diff " + row.change);
    card.dataset.uid = row.uid;
    add(card, thumb(row));
    var body = add(card, el("div", "body"));
    add(body, head(row, row.change));
    var dl = add(body, el("dl"));
    field(dl, "alt-text", row.alt_text, "alt-text");
    var sides = add(body, el("div", "sides"));
    var runs = row.caption_diff || [null, null];
    add(sides, side("v" + K.meta.from_version, row.old, runs[0], "old"));
    add(sides, side("v" + K.meta.to_version, row.new, runs[1], "new"));
    if (row.columns_changed.length) {
      add(body, el("div", "muted", "columns changed: " + row.columns_changed.join(", ")));
    }
    return card;
  }

  // ------------------------------------------------------------------ header

  function histogram(fig) {
    var box = el("div", "hist");
    var peak = Math.max.apply(null, fig.histogram.concat([1]));
    fig.histogram.forEach(function (n, i) {
      var col = add(box, el("div", "col"));
      col.title = n + " captions";
      var bar = add(col, el("div", "bar"));
      bar.style.height = Math.round(100 * n / peak) + "%";
      var lo = i * fig.bin_words;
      add(col, el("div", "tick", i === fig.histogram.length - 1 ? lo + "+" : String(lo)));
    });
    return box;
  }

  function table(headers, rows, cls) {
    var t = el("table", cls);
    var tr = add(t, el("tr"));
    headers.forEach(function (h) { add(tr, el("th", null, h)); });
    rows.forEach(function (r) {
      var row = add(t, el("tr"));
      r.forEach(function (v) { add(row, el("td", null, fmt(v))); });
    });
    return t;
  }

  function releaseFigures(box, m) {
    var fig = m.figures;
    var left = add(box, el("div", "panel"));
    add(left, el("h2", null, "caption length (words), whole release"));
    add(left, histogram(fig));
    var right = add(box, el("div", "panel"));
    add(right, el("h2", null, "words per text by stage"));
    var rows = fig.word_stats.map(function (s) { return [s[0], s[1], s[2], s[3], s[4]]; });
    rows.push(["KALE (paper)", "caption", null, fig.kale_mean_words, null]);
    add(right, table(["stage", "text", "rows", "mean", "median"], rows, "words"));
  }

  function diffFigures(box, m) {
    var panel = add(box, el("div", "panel"));
    add(panel, el("h2", null, "rows between v" + m.from_version + " and v" + m.to_version));
    var kinds = ["added", "removed", "changed"];
    add(panel, table(["change", "rows", "shown"], kinds.map(function (k) {
      return [k, m.counts[k], (m.facets.status || {})[k] || 0];
    }), "counts"));
  }

  function header(m) {
    document.title = m.title;
    byId("title").textContent = m.title;
    byId("subtitle").textContent = m.subtitle;
    var box = byId("figures");
    if (m.view === "diff") diffFigures(box, m); else releaseFigures(box, m);
    fillSelect("stage", "stage", m.facets.stage);
    fillSelect("status", m.view === "diff" ? "change" : "status", m.facets.status);
    fillSelect("reason", "reason", m.facets.reason);
  }

  // ------------------------------------------------------------------ render

  function render() {
    var found = hits();
    var pages = Math.max(1, Math.ceil(found.length / PAGE_ROWS));
    state.page = Math.max(0, Math.min(state.page, pages - 1));
    var count = byId("count");
    count.textContent = found.length + " of " + K.index.length + " rows";
    count.dataset.count = String(found.length);
    byId("page").textContent = "page " + (state.page + 1) + " of " + pages;
    byId("prev").disabled = state.page === 0;
    byId("next").disabled = state.page >= pages - 1;
    var slice = found.slice(state.page * PAGE_ROWS, (state.page + 1) * PAGE_ROWS);
    var need = slice.map(function (e) { return e[CHUNK]; }).filter(function (c, i, a) {
      return a.indexOf(c) === i;
    });
    var mine = ++renders;
    document.body.dataset.state = "loading";
    Promise.all(need.map(chunk)).then(function () {
      if (mine !== renders) return;  // a newer search replaced this one
      var grid = byId("grid");
      grid.replaceChildren();
      var card = K.meta.view === "diff" ? diffCard : releaseCard;
      slice.forEach(function (e) { add(grid, card(K["chunk" + e[CHUNK]][e[OFFSET]])); });
      document.body.dataset.query = state.q;  // what the grid shows, for tests and links
      document.body.dataset.state = "ready";
    }).catch(fail);
  }

  function fail(err) {
    var box = byId("error");
    box.hidden = false;
    box.textContent = "could not load the data: " + err.message;
    document.body.dataset.state = "error";
  }

  function start() {
    if (!K.meta || !K.index) { fail(new Error("data/meta.js or data/index.js is missing")); return; }
    header(K.meta);
    var search = byId("search");
    var timer = null;
    search.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () { state.q = search.value; state.page = 0; render(); }, 120);
    });
    byId("prev").addEventListener("click", function () { state.page -= 1; render(); });
    byId("next").addEventListener("click", function () { state.page += 1; render(); });
    render();
  }

  start();
})();
