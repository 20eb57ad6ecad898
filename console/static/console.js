// erpstream console: the little the pages need a script for. Everything works without it;
// it follows a running job's progress without reloading and ticks checkboxes in bulk.
(function () {
  "use strict";
  var job = document.getElementById("job");
  if (job && job.dataset.progress) {
    var show = function (p) {
      var state = p.running ? "running" : (p.error ? "stopped" : "done");
      document.getElementById("job-state").textContent = state;
      document.getElementById("job-replayed").textContent = String(p.replayed);
      document.getElementById("job-ignored").textContent = String(p.ignored);
      document.getElementById("job-error").textContent = p.error || "";
      return p.running;
    };
    var poll = function () {
      fetch(job.dataset.progress, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (p) { if (p && show(p)) { setTimeout(poll, 1000); } })
        .catch(function () { setTimeout(poll, 3000); });
    };
    setTimeout(poll, 500);
  }
  var events = document.getElementById("events");
  if (events) {
    var head = events.querySelector("thead th");
    var picks = events.querySelectorAll("input.pick");
    if (head && picks.length > 0) {
      var all = document.createElement("input");
      all.type = "checkbox";
      all.setAttribute("aria-label", "select all");
      all.addEventListener("change", function () {
        picks.forEach(function (p) { p.checked = all.checked; });
      });
      head.appendChild(all);
    }
  }
})();
