// The run's DAG drawn with dagre as SVG; node colours follow the run's events live.
"use strict";
(function () {
  var SVG = "http://www.w3.org/2000/svg";
  function el(name, attrs) {
    var e = document.createElementNS(SVG, name);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }
  function groupState(states) {
    var order = ["failed", "upstream_failed", "lost", "killed", "running", "starting", "retry_wait", "ready", "waiting", "queued"];
    for (var i = 0; i < order.length; i++) if (states[order[i]]) return order[i];
    return "succeeded";
  }
  function groupText(n) {
    var parts = Object.keys(n.states).sort().map(function (s) { return n.states[s] + " " + s; });
    return n.label + " [" + n.count + "]: " + parts.join(", ");
  }
  function draw(box, data) {
    var g = new dagre.graphlib.Graph();
    g.setGraph({ rankdir: "LR", nodesep: 14, ranksep: 40, marginx: 8, marginy: 8 });
    g.setDefaultEdgeLabel(function () { return {}; });
    data.nodes.forEach(function (n) {
      var text = n.group ? groupText(n) : n.label;
      g.setNode(n.id, { width: Math.min(320, 24 + 7 * text.length), height: 30, text: text, data: n });
    });
    data.edges.forEach(function (e) { g.setEdge(e[0], e[1]); });
    dagre.layout(g);
    var gi = g.graph(), svg = el("svg", { width: gi.width + 16, height: gi.height + 16, role: "img", "aria-label": "task graph" });
    g.edges().forEach(function (e) {
      var pts = g.edge(e).points.map(function (p) { return p.x + "," + p.y; }).join(" ");
      svg.appendChild(el("polyline", { "class": "edge", points: pts }));
    });
    var byId = {};
    g.nodes().forEach(function (id) {
      var n = g.node(id), d = n.data;
      var state = d.group ? groupState(d.states) : d.state;
      var grp = el("g", { "class": "node st-" + state, "data-node": id, "data-state": state, transform: "translate(" + (n.x - n.width / 2) + "," + (n.y - n.height / 2) + ")" });
      grp.appendChild(el("rect", { width: n.width, height: n.height, rx: 6 }));
      var t = el("text", { x: 10, y: 19 }); t.textContent = n.text; grp.appendChild(t);
      var title = el("title", {}); title.textContent = n.text + " (" + state + ")"; grp.appendChild(title);
      if (d.attempt) { // a task that ran opens its logs (a link: reachable with the keyboard)
        var link = el("a", { href: "/ui/attempts/" + d.attempt + "/logs" });
        link.appendChild(grp);
        svg.appendChild(link);
      } else {
        svg.appendChild(grp);
      }
      byId[id] = { g: grp, text: t, data: d, node: n };
    });
    box.replaceChildren(svg);
    return byId;
  }
  function setState(entry, state) {
    entry.g.setAttribute("class", "node st-" + state);
    entry.g.setAttribute("data-state", state);
  }
  document.addEventListener("DOMContentLoaded", function () {
    var box = document.getElementById("graph");
    if (!box) return;
    var nodes = {}, groups = {}, bodyTimer = null;
    // Actions, attempts and the timeline are server-rendered: fetched again after a burst of changes.
    function refreshBody() {
      if (bodyTimer) return;
      bodyTimer = setTimeout(function () {
        bodyTimer = null;
        fetch(location.pathname, { credentials: "same-origin" }).then(function (r) { return r.text(); }).then(function (html) {
          var fresh = new DOMParser().parseFromString(html, "text/html");
          ["run-actions", "run-body"].forEach(function (id) {
            var now = document.getElementById(id), next = fresh.getElementById(id);
            if (now && next) now.replaceWith(next);
          });
        });
      }, 700);
    }
    function load() {
      return fetch(box.dataset.graph, { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (data) {
        groups = data.groups || {};
        nodes = draw(box, data);
        showRunState(data.run.state);
      });
    }
    var rendered = (document.getElementById("run-state") || { dataset: {} }).dataset.state, es = null;
    function showRunState(state) {
      var rs = document.getElementById("run-state");
      if (rs) { rs.dataset.state = state; rs.innerHTML = '<span class="state st-' + state + '">' + state + "</span>"; }
      if (state !== rendered) { rendered = state; refreshBody(); }  // its buttons change with it
      if (es && state !== "queued" && state !== "running") { es.close(); es = null; }
    }
    load().then(function () {
      if (box.dataset.live !== "true" || !window.EventSource) return;
      var pending = null;
      es = new EventSource(box.dataset.events);
      // Sent first, and when this page fell behind: what changed since it was rendered.
      es.addEventListener("reload", function () { load(); refreshBody(); });
      es.addEventListener("task", function (e) {
        var d = JSON.parse(e.data), key = groups[d.id];
        refreshBody();
        if (key) { // a grouped task: redraw the group's counts soon, once per burst
          if (!pending) pending = setTimeout(function () { pending = null; load(); }, 1000);
          return;
        }
        var entry = nodes["t:" + d.id]; if (entry) setState(entry, d.state);
      });
      es.addEventListener("run", function (e) {
        var d = JSON.parse(e.data);
        showRunState(d.state);
        if (d.state !== "queued" && d.state !== "running") load();
      });
    });
  });
})();
