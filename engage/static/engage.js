// Focus and announcements on every page (progressive enhancement: without JavaScript the page
// still shows its messages and errors where they are).
//
// 1. A form shown again with errors: focus moves to its error summary, so a screen reader reads
//    it and a keyboard user starts from it; each link in the summary moves focus to its field.
// 2. After an action, the page the person is sent back to may name what changed in its address
//    (…#scope-research): focus moves to that element, so nobody has to find their place again.
// 3. Messages shown after an action (“Your choice is saved”) are copied into a live region that
//    is empty when the page loads: screen readers announce changes to a live region, not the
//    text it held at load.
(function () {
  "use strict";
  var FOCUSABLE = "a[href], button, input, select, textarea, summary, [tabindex]";

  function focusOn(element) {
    if (!element.matches(FOCUSABLE)) { element.setAttribute("tabindex", "-1"); }
    element.focus();
  }

  // An error-summary link points at a field (or at the first choice of a group); follow it by
  // focusing the field rather than only scrolling to it.
  document.addEventListener("click", function (event) {
    var link = event.target.closest(".error-summary a[href^='#']");
    if (!link) { return; }
    var target = document.getElementById(link.getAttribute("href").slice(1));
    if (!target) { return; }
    event.preventDefault();
    focusOn(target);
    target.scrollIntoView({ block: "center" });
  });

  var summary = document.querySelector(".error-summary");
  var changed = window.location.hash ? document.getElementById(window.location.hash.slice(1)) : null;
  if (summary) {
    focusOn(summary);
  } else if (changed && changed.hasAttribute("data-return-focus")) {
    focusOn(changed);
  }

  var region = document.getElementById("announcements");
  var messages = document.querySelectorAll("[data-announce]");
  if (region && messages.length) {
    // Filled a moment after load, once assistive technology has picked up the empty region.
    window.setTimeout(function () {
      region.textContent = Array.prototype.map.call(messages, function (message) {
        return message.textContent.replace(/\s+/g, " ").trim();
      }).join(" ");
    }, 250);
  }
}());
