// Keep a sending campaign's progress bars and counts up to date without reloading the page
// (progressive enhancement: without JavaScript the page shows the counts as they were when it
// loaded). Polls the campaign's progress endpoint until nothing is being sent any more.
(function () {
  "use strict";
  var box = document.getElementById("newsletter-progress");
  if (!box || !window.fetch) { return; }
  var url = box.getAttribute("data-progress-url");
  var interval = parseInt(box.getAttribute("data-interval"), 10) || 4000;
  var note = box.querySelector("[data-progress-note]");
  var timer = null;
  var failures = 0;

  function format(number) {
    return Number(number).toLocaleString("en-GB");
  }

  function setText(element, text) {
    // Only changed text is written, so screen readers announce changes, not every poll.
    if (element && element.textContent !== text) { element.textContent = text; }
  }

  function update(send) {
    var section = box.querySelector('[data-send-id="' + send.id + '"]');
    if (!section) { return; }
    var bar = section.querySelector("progress");
    if (bar) {
      bar.max = Math.max(send.total, 1);
      bar.value = send.handled;
      bar.textContent = send.handled + " of " + send.total;
    }
    setText(section.querySelector("[data-send-status]"), send.status_label);
    setText(section.querySelector("[data-progress-summary]"), send.summary);
    ["queued", "sent", "failed", "suppressed", "skipped", "unknown"].forEach(function (name) {
      setText(section.querySelector('[data-count="' + name + '"]'), format(send[name]));
    });
  }

  function poll() {
    fetch(url, { headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) { throw new Error("progress " + response.status); }
        return response.json();
      })
      .then(function (data) {
        failures = 0;
        (data.sends || []).forEach(update);
        if (data.active) {
          timer = window.setTimeout(poll, interval);
        } else {
          setText(note, "Sending has finished (" + data.campaign_status_label.toLowerCase() +
            "). Reload the page to see what the provider reported.");
        }
      })
      .catch(function () {
        failures += 1;
        if (failures < 5) {
          timer = window.setTimeout(poll, interval * (failures + 1));
        } else {
          setText(note, "The progress stopped updating. Reload the page to see the latest counts.");
        }
      });
  }

  timer = window.setTimeout(poll, interval);
}());
