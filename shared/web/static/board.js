/* The CPTS coordinator's board: orientation queue, failed handoffs, escalated follow-ups, SNP summary. */
(function () {
  "use strict";
  var R = Relais;
  var FAILED = ["handoff.declined", "handoff.expired"];
  // The orientation Task's states (docs/coordination.md): waiting for the CPTS, a team deciding, accepted.
  var STATES = { requested: "À orienter", "in-progress": "Équipe sollicitée", completed: "Acceptées",
                 cancelled: "Annulées" };
  var REASONS = { "no-team": "Sortie sans équipe traitante", "handoff-declined": "Relais refusé",
                  "handoff-expired": "Relais expiré" };

  function part(n, name) { return n.payload && typeof n.payload === "object" ? n.payload[name] : undefined; }
  function age(n) { var band = part(n, "age_band"); return band ? band + " ans" : "—"; }
  function fill(id, rows) {
    var body = document.querySelector("#" + id + " tbody");
    body.textContent = "";
    rows.forEach(function (row) { body.appendChild(row); });
    document.getElementById(id + "-empty").hidden = rows.length > 0;
  }

  // Communes arrive as INSEE codes (minimised data): the page shows their names, the code kept in a title.
  function communeCell(code, text) {
    var cell = R.cell(text || code || "—");
    if (code) { cell.setAttribute("data-commune", code); }
    return cell;
  }

  function nameCommunes() {
    var cells = Array.prototype.slice.call(document.querySelectorAll("[data-commune]"));
    var codes = cells.map(function (c) { return c.getAttribute("data-commune"); })
      .filter(function (code, i, all) { return all.indexOf(code) === i; }).slice(0, 100);
    if (!codes.length) { return Promise.resolve(); }
    var query = codes.map(function (code) { return "code=" + encodeURIComponent(code); }).join("&");
    return R.api("GET", "/admissions/communes?" + query).then(function (result) {
      if (!result.ok || !result.body) { return; }
      var names = {};
      (result.body.communes || []).forEach(function (c) { names[c.code] = c.display; });
      cells.forEach(function (cell) {
        var code = cell.getAttribute("data-commune");
        if (!names[code]) { return; }
        cell.textContent = cell.textContent.replace(code, names[code]);
        cell.title = "code INSEE " + code;
      });
    });
  }

  function inputOf(task, name) {
    var found = (task.input || []).filter(function (i) { return i.type && i.type.text === name; })[0];
    return found ? found.valueString || "" : "";
  }

  // Teams picked by name (GET /admissions/teams, the CPTS's territory): the label shown -> the team's id.
  var picked = {};
  var lists = 0;

  function teamPicker() {
    lists += 1;
    var list = R.el("datalist", { id: "teams-" + lists });
    var input = R.el("input", { type: "search", "class": "team", maxlength: "100", list: list.id,
                                autocomplete: "off", placeholder: "nom de l'équipe (ou son identifiant)" });
    var timer = null;
    input.addEventListener("input", function () {
      var text = input.value.trim();
      window.clearTimeout(timer);
      if (text.length < 2 || picked[text]) { return; }
      timer = window.setTimeout(function () {
        R.api("GET", "/admissions/teams?_count=10&name=" + encodeURIComponent(text)).then(function (result) {
          if (!result.ok || !result.body) { return; }
          list.textContent = "";
          (result.body.teams || []).filter(function (t) { return t.registered; }).forEach(function (t) {
            var where = t.commune && t.commune.display ? " — " + t.commune.display : "";
            var label = t.name + where;
            picked[label] = t.id;
            list.appendChild(R.el("option", { value: label }));
          });
        });
      }, 250);
    });
    return { input: input, list: list, team: function () { var v = input.value.trim(); return picked[v] || teamId(v); } };
  }

  function outputTeam(task) {
    var found = (task.output || []).filter(function (o) {
      return o.type && (o.type.text === "proposed-team" || o.type.text === "treating-team");
    })[0];
    return found && found.valueReference && found.valueReference.identifier
      ? found.valueReference.identifier.value : "";
  }

  // Each oriented patient stays on the board with its state until the orientation is closed.
  function stateOf(task) {
    var coded = task.statusReason && task.statusReason.coding && task.statusReason.coding[0];
    var reason = (coded && (REASONS[coded.code] || coded.code)) || "";
    if (task.status === "in-progress") { return R.tag("Proposée à " + (outputTeam(task) || "une équipe") + ", en attente", "late"); }
    if (task.status === "completed") { return R.tag("Acceptée par " + (outputTeam(task) || "l'équipe"), "good"); }
    if (task.businessStatus && task.businessStatus.text === "returned") {
      return R.tag("À orienter de nouveau : " + (reason || "retour"), "bad");
    }
    return R.tag("À orienter");
  }

  // The teams of the directory, by name: the field suggests "Name (id)" and sends the id.
  function loadTeams() {
    return R.api("GET", "/discharge/app/teams").then(function (result) {
      var list = document.getElementById("teams-list");
      if (!list || !result.ok || !Array.isArray(result.body)) { return; }
      list.textContent = "";
      teams = result.body;
      teams.forEach(function (t) { list.appendChild(R.el("option", { value: t.name + " (" + t.id + ")" })); });
    }).catch(function () { /* the id still works without suggestions */ });
  }
  var teams = [];
  function teamId(value) {
    var named = /\(([^()]+)\)\s*$/.exec(value);
    if (named) { return named[1].trim(); }
    var same = teams.filter(function (t) { return t.name.toLowerCase() === value.toLowerCase(); });
    return same.length === 1 ? same[0].id : value;
  }

  function assignForm(task) {
    var picker = teamPicker();
    var team = picker.input;
    team.setAttribute("aria-label", "Équipe à proposer (nom ou identifiant)");
    var button = R.el("button", { type: "button", "class": "assign", text: "Proposer" });
    button.addEventListener("click", function () {
      var value = picker.team();
      if (!value) { R.status("Indiquez l'équipe.", true); team.focus(); return; }
      button.disabled = true;
      R.api("POST", "/discharge/fhir/Task/" + encodeURIComponent(task.id) + "/$assign",
            { resourceType: "Parameters", parameter: [{ name: "team", valueString: value }] })
        .then(function (result) {
          if (!result.ok) { throw new Error(R.diagnostics(result)); }
          return load().then(function () { R.status("Équipe proposée."); });
        })
        .catch(function (error) { button.disabled = false; R.status("Échec : " + error.message, true); });
    });
    return R.el("div", { "class": "actions" }, [team, picker.list, button]);
  }

  function assignRow(task) {
    var coded = task.statusReason && task.statusReason.coding && task.statusReason.coding[0];
    var reason = (coded && (REASONS[coded.code] || coded.code)) || "—";
    var facts = [inputOf(task, "commune"), inputOf(task, "age_band") ? inputOf(task, "age_band") + " ans" : ""]
      .filter(Boolean).join(" · ");
    return R.el("tr", { "data-task": task.id, "data-state": task.status }, [
      R.cell(R.when(task.authoredOn)), R.cell(reason), communeCell(inputOf(task, "commune"), facts),
      R.el("td", { "class": "state" }, [stateOf(task)]),
      R.el("td", {}, task.status === "requested" ? [assignForm(task)] : [])
    ]);
  }

  function orientationQueue() {
    return R.api("GET", "/discharge/fhir/Task?code=orientation&status=requested,in-progress,completed&_count=100")
      .then(function (result) {
        var unavailable = document.getElementById("orientations-unavailable");
        if (result.status === 404 || result.status === 405 || result.status === 400) {
          unavailable.hidden = false;
          document.getElementById("orientations-empty").hidden = true;
          document.querySelector("#orientations").hidden = true;
          return null;
        }
        var bundle = R.must(result);
        var order = { requested: 0, "in-progress": 1, completed: 2 };
        var tasks = (bundle.entry || []).map(function (e) { return e.resource; })
          .filter(function (t) { return t && t.resourceType === "Task" && R.taskCode(t) === "orientation"; })
          .sort(function (a, b) {
            return (order[a.status] - order[b.status]) || (a.authoredOn || "").localeCompare(b.authoredOn || "");
          });
        unavailable.hidden = true;
        document.querySelector("#orientations").hidden = false;
        fill("orientations", tasks.map(assignRow));
        return tasks.filter(function (t) { return t.status === "requested"; });
      });
  }

  function orientationStates() {
    return R.api("GET", "/discharge/fhir/Task?code=orientation&_count=100").then(function (result) {
      var box = document.getElementById("handoff-states");
      box.textContent = "";
      if (!result.ok) {
        box.appendChild(R.el("p", { "class": "empty", text: "Disponible avec la recherche de tâches." }));
        return null;
      }
      var counts = {};
      (result.body.entry || []).forEach(function (e) {
        var t = e.resource;
        if (t && t.resourceType === "Task" && R.taskCode(t) === "orientation") { counts[t.status] = (counts[t.status] || 0) + 1; }
      });
      var rows = Object.keys(STATES).map(function (s) { return { key: s, n: counts[s] || 0 }; });
      R.hbars("handoff-states", rows, "n", null, function (r) { return STATES[r.key]; });
      return counts;
    });
  }

  function byDay(notifications) {
    var labels = [], keys = [], today = new Date();
    for (var i = 13; i >= 0; i -= 1) {
      var d = new Date(today.getTime() - i * 86400000);
      keys.push(d.toLocaleDateString("fr-CA", { timeZone: "Europe/Paris" }));
      labels.push(d.toLocaleDateString("fr-FR", { day: "2-digit", month: "2-digit", timeZone: "Europe/Paris" }));
    }
    var groups = [
      { name: "Sorties et admissions sans équipe", test: function (e) { return /^(admission|discharge)\./.test(e); } },
      { name: "Relais refusés ou expirés", test: function (e) { return FAILED.indexOf(e) >= 0; } },
      { name: "Suivis escaladés", test: function (e) { return e === "followup.missed"; } },
      { name: "Autres", test: function () { return true; } }
    ];
    var series = groups.map(function (g) { return { name: g.name, values: keys.map(function () { return 0; }) }; });
    notifications.forEach(function (n) {
      if (!n.received) { return; }
      var day = new Date(n.received).toLocaleDateString("fr-CA", { timeZone: "Europe/Paris" });
      var index = keys.indexOf(day);
      if (index < 0) { return; }
      for (var k = 0; k < groups.length; k += 1) {
        if (groups[k].test(n.event)) { series[k].values[index] += 1; break; }
      }
    });
    R.columns("by-day", labels, series);
  }

  function snpSummary() {
    return R.api("GET", "/snp/dashboard").then(function (result) {
      if (!result.ok) {
        R.tiles("snp-tiles", [["Tableau de bord SNP indisponible", "—"]]);
        return;
      }
      var d = result.body;
      var share = d.share_placed_within_deadline;
      // Totals under the small-cell threshold come as null (docs/privacy.md, "Dashboard periods").
      var count = function (x) { return x === null || x === undefined ? "—" : x; };
      R.tiles("snp-tiles", [
        ["Demandes SNP", count(d.requests)],
        ["Placées dans le délai", share === null || share === undefined ? "—" : Math.round(share * 1000) / 10 + " %"],
        ["Non honorés", count(d.noshows)],
        ["Non placées", count(d.unplaced), d.unplaced > 0]
      ]);
    });
  }

  function load() {
    R.status("Chargement…");
    return R.feed().then(function (resources) {
      var notifications = resources.map(R.notification);
      var failed = notifications.filter(function (n) { return FAILED.indexOf(n.event) >= 0; }).reverse();
      var escalated = notifications.filter(function (n) { return n.event === "followup.missed"; }).reverse();
      fill("failed-handoffs", failed.slice(0, 50).map(function (n) {
        return R.el("tr", { "data-notification": n.id }, [
          R.cell(R.when(n.received)), R.cell(R.eventLabel(n.event)), communeCell(part(n, "commune")), R.cell(age(n))
        ]);
      }));
      fill("escalated", escalated.slice(0, 50).map(function (n) {
        return R.el("tr", { "data-notification": n.id }, [
          R.cell(R.when(n.received)), communeCell(part(n, "commune")), R.cell(age(n)),
          R.cell(n.read ? "lu" : "non lu")
        ]);
      }));
      byDay(notifications);
      return Promise.all([orientationQueue(), orientationStates(), snpSummary(), loadTeams()]).then(function (found) {
        var queue = found[0];
        R.tiles("tiles", [
          ["Orientations en attente", queue ? queue.length : "—", queue && queue.length > 0],
          ["Relais refusés ou expirés", failed.length, failed.length > 0],
          ["Suivis escaladés", escalated.length, escalated.length > 0],
          ["Signalements reçus", notifications.length]
        ]);
        return nameCommunes().catch(function () { return null; });
      }).then(function () {
        R.status("");
        R.loaded();
      });
    }).catch(function (error) { R.status("Échec : " + error.message, true); });
  }

  document.addEventListener("DOMContentLoaded", load);
})();
