/* The CPTS's unscheduled-care (SNP) dashboard: aggregates of its territory, read with the session. */
(function () {
  "use strict";
  var R = Relais;
  var $ = function (id) { return document.getElementById(id); };

  function count(x) { return x === null || x === undefined ? "—" : x; }
  function pct(x) { return x === null || x === undefined ? "—" : Math.round(x * 1000) / 10 + " %"; }
  function minutes(x) {
    if (x === null || x === undefined) { return "—"; }
    return x >= 120 ? (Math.round(x / 6) / 10) + " h" : Math.round(x) + " min";
  }

  // Hidden cells come as one row with no label: no hour, no commune (see docs/privacy.md).
  var HIDDEN = "Autres (petits effectifs)";
  function labelled(name) { return function (r) { return r.suppressed ? HIDDEN : name(r); }; }

  function hours(shown) {
    var box = $("by-hour");
    box.textContent = "";
    var counts = {};
    shown.forEach(function (r) { if (r.hour !== null && r.hour !== undefined) { counts[r.hour] = r.requests; } });
    var rows = [];
    for (var hour = 0; hour < 24; hour += 1) { rows.push({ hour: hour, requests: counts[hour] || 0 }); }
    var max = Math.max.apply(null, rows.map(function (r) { return r.requests; }).concat([1]));
    var colW = 30, h = 160, base = 140;
    var full = rows.length * colW + 20;
    var chart = R.svg("svg", { viewBox: "0 0 " + full + " " + h, width: String(full), "class": "chart", role: "img" });
    rows.forEach(function (r, i) {
      var bh = (r.requests / max) * 120, x = 10 + i * colW;
      if (r.suppressed) {
        // A hidden hour is marked, not left looking empty; the note below says why.
        chart.appendChild(R.svg("text", { x: x + (colW - 6) / 2, y: base - 3, "text-anchor": "middle" }, "m."));
      }
      chart.appendChild(R.svg("rect", { x: x, y: base - bh, width: colW - 6, height: bh, fill: "#2f6fb3" }));
      chart.appendChild(R.svg("text", { x: x + (colW - 6) / 2, y: base + 14, "text-anchor": "middle" }, String(r.hour)));
      if (r.requests) {
        chart.appendChild(R.svg("text", { x: x + (colW - 6) / 2, y: base - bh - 3, "text-anchor": "middle" },
                                String(r.requests)));
      }
    });
    R.describe(chart, rows.map(function (r) { return r.hour + " h : " + (r.suppressed ? "masqué" : r.requests); }));
    box.appendChild(chart);
    if (rows.some(function (r) { return r.suppressed; })) {
      box.appendChild(R.el("p", { "class": "help", text: "« m. » : heure masquée, l'effectif est trop petit pour être "
        + "publié sans risque de reconnaître un patient ; elle reste comptée dans les totaux." }));
    }
  }

  function render(d) {
    $("territory").value = d.territory;
    var delay = d.time_to_appointment_minutes || {};
    if (d.suppressed) {
      R.status("Totaux masqués : un jour de la période compte moins de " + d.small_cell_threshold + " demandes.");
    }
    R.tiles("tiles", [
      ["Demandes", count(d.requests)],
      ["Placées dans le délai", pct(d.share_placed_within_deadline)],
      ["Délai médian jusqu'au RDV", minutes(delay.median)],
      ["90e centile", minutes(delay.p90)],
      ["Non honorés (no-show)", count(d.noshows)],
      ["Non placées", count(d.unplaced), d.unplaced > 0]
    ]);
    var urgencyNames = { "2h": "Sous 2 h", "same-day": "Dans la journée", "48h": "Sous 48 h" };
    R.hbars("by-urgency", d.by_urgency, "requests", "placed_within_deadline",
            labelled(function (r) { return urgencyNames[r.key] || r.key; }));
    R.hbars("by-commune", d.by_commune, "requests", "placed_within_deadline", labelled(function (r) { return r.name; }));
    R.hbars("by-effecteur", d.by_effecteur, "placed", "noshows", labelled(function (r) { return r.key; }));
    hours(d.by_hour);
    R.loaded();
  }

  function load() {
    var query = new URLSearchParams();
    ["territory", "from", "to"].forEach(function (name) { if ($(name).value) { query.set(name, $(name).value); } });
    R.status("Chargement…");
    R.api("GET", "/snp/dashboard?" + query.toString())
      .then(R.must)
      .then(function (body) { R.status(""); render(body); })
      .catch(function (error) { R.status("Échec : " + error.message, true); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    // Filters only (never a credential) may come from the address, so a view can be bookmarked.
    var params = new URLSearchParams(window.location.search);
    ["territory", "from", "to"].forEach(function (name) { if (params.get(name)) { $(name).value = params.get(name); } });
    $("filters").addEventListener("submit", function (event) { event.preventDefault(); load(); });
    load();
  });
})();
