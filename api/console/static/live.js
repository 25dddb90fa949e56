// Live refresh of a journey page's counts: the only script of the console. The page is
// complete without it; this asks for the numbers every few seconds and puts them in
// the elements marked data-here / data-passed / data-fired / data-summary.
(function () {
  "use strict";
  var list = document.querySelector("[data-live]");
  if (!list) return;
  var url = list.getAttribute("data-live");
  var EVERY_MS = 3000;

  function put(element, value) {
    if (element && element.textContent !== String(value)) {
      element.textContent = String(value);
      element.classList.add("changed");
    }
  }

  function apply(counts) {
    Object.keys(counts.steps).forEach(function (node) {
      var box = document.querySelector('[data-step="' + CSS.escape(node) + '"]');
      if (!box) return;
      var here = counts.steps[node].here;
      put(box.querySelector("[data-here]"), here);
      put(box.querySelector("[data-passed]"), counts.steps[node].passed);
      box.classList.toggle("occupied", here > 0);
    });
    Object.keys(counts.follow_ups).forEach(function (node) {
      put(document.querySelector('[data-follow-up="' + CSS.escape(node) + '"] [data-fired]'),
          counts.follow_ups[node]);
    });
    put(document.querySelector("[data-counted-at]"), counts.counted_at);
    Object.keys(counts.summary).forEach(function (name) {
      var element = document.querySelector('[data-summary="' + name + '"]');
      put(element, counts.summary[name]);
      // A line shown only when there is something to count (terminated runs).
      var line = element && element.closest("[data-shown-when-counted]");
      if (line) line.hidden = !(counts.summary[name] > 0);
    });
  }

  function refresh() {
    if (document.hidden) return setTimeout(refresh, EVERY_MS);
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (counts) { if (counts) apply(counts); })
      .catch(function () {})
      .then(function () { setTimeout(refresh, EVERY_MS); });
  }
  // Numbers still being counted when the page was made: ask at once.
  setTimeout(refresh, list.hasAttribute("data-pending") ? 0 : EVERY_MS);
})();
