// Kimberly's UI behaviour: no inline scripts anywhere (strict CSP), all here.
(function () {
  "use strict";

  var live = null;

  // Says a message in the aria-live region; cleared first so that the same
  // message twice in a row is announced twice.
  function announce(message) {
    live = live || document.getElementById("live");
    if (!live) return;
    live.textContent = "";
    window.setTimeout(function () { live.textContent = message; }, 50);
  }

  // The server asks for announcements with HX-Trigger: {"announce": {...}}.
  document.addEventListener("announce", function (evt) {
    var detail = evt.detail || {};
    if (detail.message) announce(detail.message);
  });

  // A refusal (4xx/5xx) is shown next to the control that sent the request:
  // in the error slot of its nearest [data-error-scope], else the page's.
  // (detail.elt is the swap target; the requesting element is requestConfig.elt.)
  document.addEventListener("htmx:beforeSwap", function (evt) {
    var source = evt.detail.requestConfig.elt;
    if (evt.detail.xhr.status < 400) {
      clearErrors(source);
      return;
    }
    var scope = source.closest("[data-error-scope]");
    var slot = (scope && scope.querySelector(".error-slot")) ||
      document.getElementById("page-error");
    evt.detail.shouldSwap = true;
    evt.detail.isError = false;
    evt.detail.target = slot;
    evt.detail.swapOverride = "innerHTML";
  });

  // Nothing answered (server down, network gone): say so in words.
  document.addEventListener("htmx:sendError", function () {
    announce("Error: the server did not answer. Check your connection and try again.");
  });

  function clearErrors(elt) {
    var scope = elt && elt.closest("[data-error-scope]");
    var slot = scope && scope.querySelector(".error-slot");
    if (slot) slot.textContent = "";
  }

  // A form marked data-reset-on-success is emptied once its request succeeded.
  document.addEventListener("htmx:afterRequest", function (evt) {
    var elt = evt.detail.elt;
    if (evt.detail.successful && elt.matches && elt.matches("form[data-reset-on-success]")) {
      elt.reset();
    }
  });

  // Focus after a swap: the element the server marked (data-autofocus), so a
  // keyboard user lands on the next sensible control instead of the page top.
  document.addEventListener("htmx:afterSettle", function () {
    var target = document.querySelector("[data-autofocus]");
    if (!target) return;
    target.removeAttribute("data-autofocus");
    target.focus();
  });
})();

// --- Settings (issue 13, settings and privacy) ---------------------------------
// A token shown once (an API token, a receipt token) is selected when focused,
// so copying it is one keystroke.
(function () {
  "use strict";
  document.addEventListener("focusin", function (evt) {
    var elt = evt.target;
    if (elt && elt.matches && elt.matches("input[data-select-on-focus]")) elt.select();
  });
})();
