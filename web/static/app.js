// builds web UI: the job page's live view (Server-Sent Events), log
// auto-follow, and the manifest editor's line numbers. Pages work without
// this file; it only makes them live.
(function () {
  "use strict";

  var FINAL = ["success", "failed", "timeout", "cancelled"];
  var ICONS = { pending: "◷", queued: "◷", running: "◌", success: "✔", failed: "✘", timeout: "✘", cancelled: "⊘", skipped: "−" };

  function statusSpan(st) {
    var s = document.createElement("span");
    s.className = "status s-" + st;
    var i = document.createElement("span");
    i.className = "icon";
    i.setAttribute("aria-hidden", "true");
    i.textContent = ICONS[st] || "?";
    s.appendChild(i);
    s.appendChild(document.createTextNode(" " + st));
    return s;
  }

  function setStatus(el, st) {
    if (!el) return;
    el.textContent = "";
    el.appendChild(statusSpan(st));
  }

  function nearBottom() {
    return window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 48;
  }

  function scrollDown() {
    window.scrollTo(0, document.documentElement.scrollHeight);
  }

  // liveJob follows one job: new log lines are appended as they arrive,
  // statuses update in place, and the page keeps scrolling to the newest
  // line until the reader scrolls up.
  function liveJob(root) {
    var initial = root.getAttribute("data-status");
    var running = FINAL.indexOf(initial) < 0;
    var follow = running && !location.hash;
    var ended = false;
    var btn = document.getElementById("follow");
    if (follow) scrollDown();

    function updateButton() {
      if (btn) btn.hidden = follow || ended || !running;
    }
    window.addEventListener("scroll", function () {
      follow = nearBottom();
      updateButton();
    }, { passive: true });
    if (btn) btn.addEventListener("click", function () {
      follow = true;
      scrollDown();
      updateButton();
    });

    var es = new EventSource(root.getAttribute("data-events"));
    es.addEventListener("log", function (ev) {
      var d = JSON.parse(ev.data);
      var box = root.querySelector('.log[data-index="' + d.i + '"]');
      if (!box) return;
      var sec = box.closest("details");
      if (sec) sec.hidden = false;
      var wasFollowing = follow;
      box.insertAdjacentHTML("beforeend", d.html);
      if (wasFollowing) scrollDown();
    });
    es.addEventListener("status", function (ev) {
      var d = JSON.parse(ev.data);
      setStatus(document.getElementById("job-status"), d.job);
      var setup = root.querySelector('details.logsec[data-index="0"] .logstatus');
      setStatus(setup, d.job);
      (d.tasks || []).forEach(function (st, i) {
        setStatus(root.querySelector('.task-status[data-index="' + i + '"]'), st);
        var sec = root.querySelector('details.logsec[data-index="' + (i + 1) + '"]');
        if (!sec) return;
        setStatus(sec.querySelector(".logstatus"), st);
        if (st !== "pending") sec.hidden = false;
      });
      document.title = document.title.replace(/ - [a-z]+( · |$)/, " - " + d.job + "$1");
      if (FINAL.indexOf(d.job) >= 0 && FINAL.indexOf(initial) < 0) {
        running = false;
        var cancel = document.getElementById("cancel");
        if (cancel) cancel.hidden = true;
        var bottom = document.getElementById("bottom");
        if (bottom) {
          bottom.textContent = "Build complete: ";
          bottom.appendChild(statusSpan(d.job));
          bottom.appendChild(document.createTextNode(" · "));
          var a = document.createElement("a");
          a.href = location.pathname;
          a.textContent = "reload for artifacts and timings";
          bottom.appendChild(a);
          bottom.hidden = false;
        }
        updateButton();
      }
    });
    es.addEventListener("end", function () {
      ended = true;
      es.close();
      updateButton();
    });
  }

  // editor numbers the manifest's lines beside the textarea and marks the
  // ones the parser complained about.
  function editor(box) {
    var ta = box.querySelector("textarea");
    var gutter = box.querySelector(".gutter");
    if (!ta || !gutter) return;
    var bad = {};
    (box.getAttribute("data-errors") || "").split(",").forEach(function (n) { if (n) bad[n] = true; });
    function render() {
      var n = ta.value.split("\n").length;
      gutter.textContent = "";
      for (var i = 1; i <= n; i++) {
        var s = document.createElement("span");
        s.textContent = i + "\n";
        if (bad[i]) s.className = "bad";
        gutter.appendChild(s);
      }
    }
    gutter.hidden = false;
    render();
    ta.addEventListener("input", function () { bad = {}; render(); });
    ta.addEventListener("scroll", function () { gutter.scrollTop = ta.scrollTop; });
    document.querySelectorAll("[data-line]").forEach(function (a) {
      a.addEventListener("click", function (ev) {
        ev.preventDefault();
        var line = parseInt(a.getAttribute("data-line"), 10);
        var lines = ta.value.split("\n");
        var start = 0;
        for (var i = 0; i < line - 1 && i < lines.length; i++) start += lines[i].length + 1;
        var end = start + (lines[line - 1] || "").length;
        ta.focus();
        ta.setSelectionRange(start, end);
        var lh = parseFloat(getComputedStyle(ta).lineHeight) || 18;
        ta.scrollTop = Math.max(0, (line - 3) * lh);
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var job = document.getElementById("jobpage");
    if (job && window.EventSource) liveJob(job);
    document.querySelectorAll(".editor").forEach(editor);
  });
})();
