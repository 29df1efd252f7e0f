// Sorting, filtering and search for the one table with class "sortable". Reads everything
// from the DOM (no data is ever written into this script). Without JavaScript the table
// is complete, in its default order, and shows no control that would do nothing: the
// filters stay hidden and the headings are plain text until this script makes them
// buttons.
(function () {
  "use strict";

  // A server link opens the details it points at; a closed <details> would hide them.
  // Our ids are plain ASCII, so the hash is used as it is (decoding a hand-typed one
  // could throw and stop the rest of this script).
  function openTarget(hash) {
    var target = hash.length > 1 ? document.getElementById(hash.slice(1)) : null;
    if (target && target.tagName === "DETAILS") { target.open = true; }
  }
  document.addEventListener("click", function (e) {
    var a = e.target.closest ? e.target.closest('a[href^="#"]') : null;
    if (a) { openTarget(a.getAttribute("href")); }
  });
  openTarget(window.location.hash);

  // Closed <details> do not print; open them for paper and restore afterwards.
  var reopened = [];
  window.addEventListener("beforeprint", function () {
    reopened = Array.prototype.filter.call(document.querySelectorAll("details"), function (d) {
      return !d.open;
    });
    reopened.forEach(function (d) { d.open = true; });
  });
  window.addEventListener("afterprint", function () {
    reopened.forEach(function (d) { d.open = false; });
    reopened = [];
  });

  var table = document.querySelector("table.sortable");
  if (!table || !table.tBodies.length) { return; }
  var tbody = table.tBodies[0];
  // The page's own order (worst first, then by name) breaks every tie, so a sort has
  // one result whatever was clicked before.
  var rows = Array.prototype.slice.call(tbody.rows);
  var controls = document.getElementById("controls");
  var shown = document.getElementById("shown");
  if (controls) { controls.hidden = false; }

  // Keys come from data-sort where the page set one ("<rank> <text>": severity first),
  // else from the text. Digit runs compare as numbers: EX2 before EX10, 15.2.986 before
  // 15.2.1544. A spanned row (a server that could not be scanned) sorts by its spanning
  // cell, whose rank keeps those rows together after every real value.
  var collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });
  function sortKey(row, col) {
    var cell = row.querySelector('[data-col="' + col + '"]') || row.querySelector("[data-span]");
    if (!cell) { return ""; }
    var k = cell.getAttribute("data-sort");
    return k !== null ? k : cell.textContent.trim();
  }

  var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);
  var current = null;
  var ascending = true;
  headers.forEach(function (th) {
    var col = th.getAttribute("data-col");
    if (!col) { return; }
    var button = document.createElement("button");
    button.type = "button";
    button.className = "sort";
    button.textContent = th.textContent;
    // The arrow is decoration: hidden from screen readers, which read aria-sort instead;
    // the no-break space keeps it beside the last word of the heading.
    var arrow = document.createElement("span");
    arrow.className = "arrow";
    arrow.setAttribute("aria-hidden", "true");
    arrow.textContent = "\u00a0\u2195";
    button.appendChild(arrow);
    th.textContent = "";
    th.appendChild(button);
    button.addEventListener("click", function () {
      ascending = current === col ? !ascending : true;
      current = col;
      headers.forEach(function (other) {
        other.removeAttribute("aria-sort");
        var a = other.querySelector(".arrow");
        if (a) { a.textContent = "\u00a0\u2195"; }
      });
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      arrow.textContent = ascending ? "\u00a0\u2191" : "\u00a0\u2193";
      var keyed = rows.map(function (r, i) { return { row: r, key: sortKey(r, col), index: i }; });
      keyed.sort(function (a, b) {
        var c = collator.compare(a.key, b.key);
        return (ascending ? c : -c) || a.index - b.index;
      });
      keyed.forEach(function (k) { tbody.appendChild(k.row); });
    });
  });

  var filters = Array.prototype.slice.call(document.querySelectorAll("select[data-filter]"));
  var search = document.getElementById("search");
  function apply() {
    var needle = search ? search.value.trim().toLowerCase() : "";
    var count = 0;
    rows.forEach(function (row) {
      var ok = filters.every(function (f) {
        return f.value === "" || row.getAttribute("data-" + f.getAttribute("data-filter")) === f.value;
      });
      if (ok && needle) { ok = row.textContent.toLowerCase().indexOf(needle) !== -1; }
      row.hidden = !ok;
      if (ok) { count += 1; }
    });
    if (shown) { shown.textContent = count + " of " + rows.length + " shown"; }
  }
  filters.forEach(function (f) { f.addEventListener("change", apply); });
  if (search) { search.addEventListener("input", apply); }
  apply();
})();
