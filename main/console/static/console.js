// SRE Agent console: the page refreshes itself every <body data-refresh> seconds, but never
// while the operator types a note or selects text, nor once a form was sent or a link
// followed (a reload would cancel that navigation); <details> that were open stay open
// across refreshes. Pages work without this file (a <noscript> refresh).
(function () {
  "use strict";

  var key = "console-open:" + location.pathname + location.search;
  var leaving = false;

  function restoreDetails() {
    var open;
    try { open = JSON.parse(sessionStorage.getItem(key) || "[]"); } catch (e) { open = []; }
    open.forEach(function (id) {
      var element = document.getElementById(id);
      if (element && element.tagName === "DETAILS") { element.open = true; }
    });
  }

  function saveDetails() {
    var open = [];
    document.querySelectorAll("details[id]").forEach(function (element) {
      if (element.open) { open.push(element.id); }
    });
    try { sessionStorage.setItem(key, JSON.stringify(open)); } catch (e) { /* private mode */ }
  }

  function busy() {
    if (leaving || document.hidden) { return true; }
    var active = document.activeElement;
    if (active && /^(TEXTAREA|INPUT|SELECT)$/.test(active.tagName) && active.type !== "hidden") {
      return true;
    }
    var typed = Array.prototype.some.call(document.querySelectorAll("textarea, input[type=text]"), function (field) {
      return field.value !== "";
    });
    var selection = window.getSelection && window.getSelection();
    return typed || Boolean(selection && !selection.isCollapsed);
  }

  function start(seconds) {
    var state = document.getElementById("refresh-state");
    var left = seconds;
    window.setInterval(function () {
      if (busy()) {
        left = seconds;
        if (state) { state.textContent = "auto-refresh paused"; state.classList.add("paused"); }
        return;
      }
      if (state) { state.textContent = "auto-refresh " + seconds + " s"; state.classList.remove("paused"); }
      left -= 1;
      if (left <= 0) { saveDetails(); location.reload(); }
    }, 1000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    restoreDetails();
    document.addEventListener("toggle", saveDetails, true);
    document.addEventListener("submit", function () { leaving = true; }, true);
    document.addEventListener("click", function (event) {
      var plain = event.button === 0 && !(event.ctrlKey || event.metaKey || event.shiftKey || event.altKey);
      if (plain && event.target.closest && event.target.closest("a[href]")) { leaving = true; }
    });
    window.addEventListener("beforeunload", function () { leaving = true; });
    window.addEventListener("pageshow", function () { leaving = false; });
    var seconds = Number(document.body.getAttribute("data-refresh") || "0");
    if (seconds > 0) { start(seconds); }
  });
})();
