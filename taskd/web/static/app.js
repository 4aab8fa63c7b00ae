// taskd dashboard: local times, countdowns, the overview's live refresh, and log following.
"use strict";
(function () {
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (t) {
      var d = new Date(t.getAttribute("datetime"));
      if (!isNaN(d)) { t.title = t.getAttribute("datetime"); t.textContent = d.toLocaleString(); }
    });
  }
  function countdowns() {
    document.querySelectorAll(".countdown[data-at]").forEach(function (el) {
      var s = Math.round((Number(el.dataset.at) / 1e6 - Date.now()) / 1000);
      if (s < 0) { el.textContent = "(due)"; return; }
      var h = Math.floor(s / 3600), m = Math.floor(s % 3600 / 60), sec = s % 60;
      el.textContent = "(in " + (h ? h + "h " : "") + (h || m ? m + "m " : "") + sec + "s)";
    });
  }
  function overview() {
    var box = document.getElementById("overview");
    if (!box || !window.EventSource) return;
    var es = new EventSource(box.dataset.live);
    es.addEventListener("changed", function () {
      htmx.ajax("GET", box.dataset.refresh, { target: box, swap: "innerHTML" }).then(function () { localTimes(box); });
    });
  }
  function logs() {
    var log = document.getElementById("log");
    if (!log) return;
    var search = document.getElementById("log-search"), hits = document.getElementById("log-hits");
    var follow = document.getElementById("log-follow"), status = document.getElementById("log-status");
    var plain = null;
    function highlight() {
      log.querySelectorAll("mark").forEach(function (m) { m.replaceWith(document.createTextNode(m.textContent)); });
      log.normalize();
      var q = search.value; if (!q) { hits.textContent = ""; return; }
      var walker = document.createTreeWalker(log, NodeFilter.SHOW_TEXT), nodes = [], n, count = 0;
      while ((n = walker.nextNode())) nodes.push(n);
      nodes.forEach(function (node) {
        var text = node.textContent, lower = text.toLowerCase(), ql = q.toLowerCase(), i = lower.indexOf(ql);
        if (i < 0) return;
        var frag = document.createDocumentFragment(), pos = 0;
        while (i >= 0) {
          frag.appendChild(document.createTextNode(text.slice(pos, i)));
          var mk = document.createElement("mark"); mk.textContent = text.slice(i, i + q.length); frag.appendChild(mk);
          count++; pos = i + q.length; i = lower.indexOf(ql, pos);
        }
        frag.appendChild(document.createTextNode(text.slice(pos)));
        node.replaceWith(frag);
      });
      hits.textContent = count + " match" + (count === 1 ? "" : "es");
      var first = log.querySelector("mark"); if (first) first.scrollIntoView({ block: "center" });
    }
    search.addEventListener("input", highlight);
    if (log.dataset.live !== "true" || !window.EventSource) return;
    var es = new EventSource(log.dataset.events + "?after=" + log.dataset.after);
    es.addEventListener("output", function (e) {
      var d = JSON.parse(e.data);
      log.insertAdjacentHTML("beforeend", d.html);
      if (search.value) highlight();
      if (follow.checked) log.scrollTop = log.scrollHeight;
    });
    es.addEventListener("ended", function () { es.close(); status.textContent = "finished"; });
  }
  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document); countdowns(); setInterval(countdowns, 1000); overview(); logs();
  });
})();
