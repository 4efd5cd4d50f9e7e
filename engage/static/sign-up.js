// Sign-up: show only the questions for the role a person chooses, so nobody has to read or tab
// past questions that are not for them. Progressive enhancement: without JavaScript every
// role's group of questions shows, each headed "If you are …".
//
// When the page loads, the chosen role's group shows, and any other group with an error in it
// (an error the summary links to must be visible). Choosing a role then shows only its group.
// Hidden groups use the hidden attribute, so their fields are out of the tab order and out of
// what screen readers read.
(function () {
  "use strict";
  var form = document.querySelector("form[data-sign-up]");
  if (!form) { return; }
  var groups = form.querySelectorAll("[data-for-role]");

  function chosenRole() {
    var checked = form.querySelector("input[name='role']:checked");
    return checked ? checked.value : null;
  }

  function showGroupsFor(role, keepErrors) {
    Array.prototype.forEach.call(groups, function (group) {
      var forRole = group.getAttribute("data-for-role") === role;
      var hasError = keepErrors && group.querySelector(".field-invalid") !== null;
      group.hidden = !(forRole || hasError);
    });
  }

  form.addEventListener("change", function (event) {
    if (event.target.name === "role") { showGroupsFor(chosenRole(), false); }
  });
  showGroupsFor(chosenRole(), true);
}());
