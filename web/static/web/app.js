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

// --- Chat (web/views/chat.py): replies streamed as server-sent events ---------
// The composer marked data-stream posts with fetch and reads the reply as it
// comes: `turn` (the message and an empty reply), `delta`s of text, then
// `done` (the reply with its context rail, HTML swapped in by htmx, with its
// out-of-band parts) or `error`. Without fetch streaming it posts as a form.
(function () {
  "use strict";

  function say(message) {
    document.dispatchEvent(new CustomEvent("announce", { detail: { message: message } }));
  }

  function parseEvent(block) {
    var name = "message", data = [];
    block.split("\n").forEach(function (line) {
      if (line.indexOf("event:") === 0) name = line.slice(6).trim();
      else if (line.indexOf("data:") === 0) data.push(line.slice(5).replace(/^ /, ""));
    });
    return { name: name, data: data.length ? JSON.parse(data.join("\n")) : {} };
  }

  function refused(form, response) {
    return response.text().then(function (html) {
      htmx.swap(form.querySelector(".error-slot"), html, { swapStyle: "innerHTML" });
      var said = null;
      try { said = JSON.parse(response.headers.get("HX-Trigger") || "{}").announce; } catch (e) { said = null; }
      say((said && said.message) || "Error: the message was not sent.");
    });
  }

  function stream(form, response) {
    var reader = response.body.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    var pending = null;
    var handlers = {
      turn: function (data) {
        htmx.swap(document.getElementById("transcript"), data.html, { swapStyle: "beforeend" });
        pending = document.getElementById("pending-reply");
        var field = document.getElementById("composer-conversation");
        field.value = data.conversation_id;
        field.setAttribute("value", data.conversation_id);
        window.history.replaceState(null, "", data.url);
        form.reset();
      },
      delta: function (data) {
        if (pending) pending.querySelector(".turn-text").appendChild(document.createTextNode(data.content));
      },
      done: function (data) {
        if (pending) htmx.swap(pending, data.html, { swapStyle: "outerHTML" });
        pending = null;
        say(data.said);
      },
      error: function (data) {
        htmx.swap(form.querySelector(".error-slot"), data.html, { swapStyle: "innerHTML" });
        if (pending) {
          pending.removeAttribute("aria-busy");
          pending.querySelector(".note").textContent = "No reply: " + data.message;
        }
        say("Error: " + data.message);
      }
    };
    function pump() {
      return reader.read().then(function (chunk) {
        if (chunk.done) return;
        buffer += decoder.decode(chunk.value, { stream: true });
        var blocks = buffer.split("\n\n");
        buffer = blocks.pop();
        blocks.forEach(function (block) {
          if (!block.trim()) return;
          var evt = parseEvent(block);
          if (handlers[evt.name]) handlers[evt.name](evt.data);
        });
        return pump();
      });
    }
    return pump();
  }

  document.addEventListener("submit", function (evt) {
    var form = evt.target;
    if (!form.matches || !form.matches("form[data-stream]")) return;
    if (!(window.fetch && window.ReadableStream && window.TextDecoder && window.htmx)) return;
    evt.preventDefault();
    if (form.getAttribute("aria-busy") === "true") return;
    form.setAttribute("aria-busy", "true");  // one message at a time
    form.querySelector(".error-slot").textContent = "";
    fetch(form.getAttribute("data-stream"), {
      method: "POST",
      body: new URLSearchParams(new FormData(form)),
      headers: { "HX-Request": "true" },
      credentials: "same-origin"
    }).then(function (response) {
      var type = response.headers.get("Content-Type") || "";
      if (!response.ok || type.indexOf("text/event-stream") !== 0) return refused(form, response);
      return stream(form, response);
    }).catch(function () {
      say("Error: the server did not answer. Check your connection and try again.");
    }).then(function () {
      form.removeAttribute("aria-busy");
    });
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

// --- Memory export (web/views/memory.py memory_bulk, action "export") ----------
// A submit button marked data-download posts its form with fetch and saves the
// answer as a file (its name from Content-Disposition), so a refusal can be
// shown beside the button instead of replacing the page. Without fetch or Blob
// the form posts as usual and the browser downloads the file itself.
(function () {
  "use strict";

  function say(message, level) {
    document.dispatchEvent(new CustomEvent("announce", { detail: { message: message, level: level } }));
  }

  function announced(response) {
    try { return (JSON.parse(response.headers.get("HX-Trigger") || "{}").announce || {}).message; } catch (e) { return null; }
  }

  function filename(response) {
    var found = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
    return found ? found[1] : "download";
  }

  function save(blob, name) {
    var url = URL.createObjectURL(blob);
    var link = document.createElement("a");
    link.href = url;
    link.download = name;
    link.hidden = true;
    document.body.appendChild(link);
    link.click();
    link.remove();
    window.setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
  }

  document.addEventListener("click", function (evt) {
    var button = evt.target.closest && evt.target.closest("button[data-download]");
    if (!button || !button.form) return;
    if (!(window.fetch && window.Blob && window.URL && URL.createObjectURL)) return;
    evt.preventDefault();
    var form = button.form;
    var slot = form.querySelector(".error-slot");
    var body = new FormData(form);
    body.append(button.name, button.value);
    if (button.getAttribute("aria-busy") === "true") return;  // one at a time
    button.setAttribute("aria-busy", "true");
    button.disabled = true;
    fetch(form.getAttribute("action"), {
      method: "POST",
      body: body,
      headers: { "HX-Request": "true" },
      credentials: "same-origin"
    }).then(function (response) {
      var redirect = response.headers.get("HX-Redirect");
      if (redirect) {  // signed out meanwhile: to sign-in, and back here after
        window.location.href = redirect;
        return;
      }
      if (!response.ok) {
        return response.text().then(function (html) {
          // Our refusals are a fragment with its code; anything else (a proxy's
          // page) is said in words, never swapped into the page.
          var ours = html.indexOf("data-error-code") !== -1 && html.indexOf("<html") === -1;
          var words = "Error " + response.status + ": nothing was exported. Reload the page and try again.";
          if (slot && ours) htmx.swap(slot, html, { swapStyle: "innerHTML" });
          else if (slot) slot.textContent = words;
          say(announced(response) || words, "error");
        });
      }
      return response.blob().then(function (blob) {
        if (slot) slot.textContent = "";
        save(blob, filename(response));
        say(announced(response) || "Exported.", "info");
      });
    }).catch(function () {
      say("Error: the server did not answer. Check your connection and try again.", "error");
    }).then(function () {
      button.removeAttribute("aria-busy");
      button.disabled = false;
    });
  });
})();
