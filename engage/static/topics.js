// While a title is typed, list published topics with similar titles (progressive enhancement:
// without JavaScript the form shows possible duplicates after the first submit).
(function () {
  "use strict";
  var box = document.getElementById("similar-titles");
  var input = document.getElementById("title");
  if (!box || !input || !window.fetch) { return; }
  var timer = null;
  var lastQuery = "";

  function render(topics) {
    box.textContent = "";
    if (!topics.length) { return; }
    var heading = document.createElement("p");
    heading.textContent = "Published topics with similar titles:";
    box.appendChild(heading);
    var list = document.createElement("ul");
    topics.forEach(function (topic) {
      var item = document.createElement("li");
      var link = document.createElement("a");
      link.href = topic.url;
      link.textContent = topic.title;
      item.appendChild(link);
      list.appendChild(item);
    });
    box.appendChild(list);
  }

  function lookUp() {
    var query = input.value.trim();
    if (query === lastQuery) { return; }
    lastQuery = query;
    if (query.length < 4) { render([]); return; }
    fetch(box.getAttribute("data-url") + "?title=" + encodeURIComponent(query), {
      headers: { "Accept": "application/json" }, credentials: "same-origin"
    })
      .then(function (response) { return response.ok ? response.json() : { topics: [] }; })
      .then(function (data) { if (input.value.trim() === query) { render(data.topics || []); } })
      .catch(function () { render([]); });
  }

  input.addEventListener("input", function () {
    window.clearTimeout(timer);
    timer = window.setTimeout(lookUp, 300);
  });
}());
