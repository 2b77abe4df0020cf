/* Orchestrator dashboard: times in the viewer's zone (UTC stays in the title, shown on hover),
   and the "select all" box of bulk actions. No dependencies; htmx is loaded beside it. */
(function () {
  "use strict";
  var format = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short"
  });

  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      if (el.dataset.local) { return; }
      var when = new Date(el.getAttribute("datetime"));
      if (isNaN(when.getTime())) { return; }
      el.textContent = format.format(when);
      el.dataset.local = "1";
    });
  }

  function selectAll(root) {
    root.querySelectorAll("input[data-select-all]").forEach(function (box) {
      box.addEventListener("change", function () {
        var form = box.closest("form");
        if (!form) { return; }
        form.querySelectorAll('input[type="checkbox"][name="job"]').forEach(function (job) {
          job.checked = box.checked;
        });
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    selectAll(document);
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    localTimes(event.target);
  });
}());
