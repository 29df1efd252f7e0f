// Sorting, filtering and search for the one table with class "sortable". Reads everything
// from the DOM (no data is ever written into this script). Without JavaScript the table
// is complete and the controls stay hidden.
(function () {
  "use strict";
  var table = document.querySelector("table.sortable");
  if (!table || !table.tBodies.length) { return; }
  var tbody = table.tBodies[0];
  var rows = Array.prototype.slice.call(tbody.rows);
  var controls = document.getElementById("controls");
  var shown = document.getElementById("shown");
  if (controls) { controls.hidden = false; }

  // A spanned row (a server that could not be scanned) sorts by its spanning cell.
  function sortKey(row, col) {
    var cell = row.querySelector('[data-col="' + col + '"]') || row.querySelector("[data-span]");
    if (!cell) { return ""; }
    var k = cell.getAttribute("data-sort");
    return k !== null ? k : cell.textContent.trim().toLowerCase();
  }

  var current = null;
  var ascending = true;
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
    var col = th.getAttribute("data-col");
    var button = th.querySelector("button.sort");
    if (!col || !button) { return; }
    button.addEventListener("click", function () {
      ascending = current === col ? !ascending : true;
      current = col;
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (other) {
        other.removeAttribute("aria-sort");
      });
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      rows.sort(function (a, b) {
        var c = sortKey(a, col).localeCompare(sortKey(b, col), undefined, { numeric: true });
        return ascending ? c : -c;
      });
      rows.forEach(function (r) { tbody.appendChild(r); });
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
})();
