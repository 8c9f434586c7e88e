/* The team referent's worklist: handoffs to answer, follow-ups due and missed, recent notifications. */
(function () {
  "use strict";
  var R = Relais;
  var SOON_DAYS = 7;

  function ins(task) {
    var id = task["for"] && task["for"].identifier;
    return id ? id.value : "—";
  }
  function requester(task) {
    var id = task.requester && task.requester.identifier;
    return id ? id.value : "—";
  }
  function input(task, name) {
    var found = (task.input || []).filter(function (i) { return i.type && i.type.text === name; })[0];
    if (!found) { return ""; }
    return found.valueString || (found.valueContactPoint && found.valueContactPoint.value) || "";
  }
  function due(task) { return task.restriction && task.restriction.period && task.restriction.period.end; }

  function act(button, url, body) {
    var row = button.closest("tr");
    row.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
    R.status("Envoi…");
    return R.api("POST", url, body).then(function (result) {
      if (!result.ok) { throw new Error(R.diagnostics(result)); }
      return load().then(function () { R.status("Réponse enregistrée."); });
    }).catch(function (error) {
      row.querySelectorAll("button").forEach(function (b) { b.disabled = false; });
      R.status("Échec : " + error.message, true);
    });
  }

  function handoffRow(task) {
    var url = "/discharge/fhir/Task/" + encodeURIComponent(task.id);
    var accept = R.el("button", { type: "button", "class": "accept", text: "Accepter" });
    var decline = R.el("button", { type: "button", "class": "secondary decline", text: "Refuser…" });
    var reason = R.el("input", { type: "text", "class": "reason", maxlength: "300",
                                 placeholder: "Motif du refus (obligatoire)", hidden: "hidden" });
    var confirm = R.el("button", { type: "button", "class": "danger confirm-decline", text: "Confirmer le refus",
                                   hidden: "hidden" });
    accept.addEventListener("click", function () { act(accept, url + "/$accept"); });
    decline.addEventListener("click", function () {
      reason.hidden = false; confirm.hidden = false; decline.hidden = true; reason.focus();
    });
    confirm.addEventListener("click", function () {
      var text = reason.value.trim();
      if (!text) { R.status("Indiquez le motif du refus.", true); reason.focus(); return; }
      act(confirm, url + "/$decline",
          { resourceType: "Parameters", parameter: [{ name: "reason", valueString: text }] });
    });
    var hospitalRef = [input(task, "hospital-referent"), input(task, "hospital-referent-phone")]
      .filter(Boolean).join(" · ");
    var when = R.cell(R.when(task.authoredOn));
    // Proposed by the CPTS: until the team accepts it sees an age band and a commune, not who the patient is.
    var who = task.basedOn ? ["Orienté par la CPTS", input(task, "age_band") && input(task, "age_band") + " ans",
                              input(task, "commune")].filter(Boolean).join(" · ") : ins(task);
    if (task.priority === "urgent") { when.appendChild(document.createTextNode(" ")); when.appendChild(R.tag("complexe", "urgent")); }
    return R.el("tr", { "data-task": task.id }, [
      when, R.cell(who), R.cell(requester(task)), R.cell(hospitalRef || "—"), R.cell(R.when(due(task))),
      R.el("td", {}, [R.el("div", { "class": "actions" }, [accept, decline, reason, confirm])])
    ]);
  }

  function today() { return new Date().toLocaleDateString("sv-SE", { timeZone: "Europe/Paris" }); }

  // The day it was done (today by default, never later): today's completion keeps the current time.
  function completedAt(day) {
    return day === today() ? new Date().toISOString() : day + "T12:00:00+00:00";
  }

  function followupRow(task, now) {
    var end = due(task), state;
    var business = task.businessStatus && task.businessStatus.text;
    if (business === "overdue-escalated") { state = R.tag("en retard, CPTS prévenue", "bad"); }
    else if (business === "overdue" || (end && new Date(end) < now)) { state = R.tag("en retard", "late"); }
    else { state = R.tag("à faire"); }
    var day = R.el("input", { type: "date", "class": "done-on", value: today(), max: today(),
                              "aria-label": "Date de réalisation : " + (task.description || "suivi") });
    var done = R.el("button", { type: "button", "class": "done", text: "Marquer fait" });
    done.addEventListener("click", function () {
      if (!day.value) { R.status("Indiquez la date de réalisation.", true); day.focus(); return; }
      act(done, "/discharge/fhir/Task/" + encodeURIComponent(task.id) + "/$complete",
          { resourceType: "Parameters", parameter: [{ name: "completedAt", valueDateTime: completedAt(day.value) }] });
    });
    return R.el("tr", { "data-task": task.id }, [
      R.cell(R.when(end)), R.cell(task.description || "suivi"), R.cell(ins(task)), R.el("td", {}, [state]),
      R.el("td", {}, [R.el("div", { "class": "actions" }, [day, done])])
    ]);
  }

  function notificationRow(n) {
    var read = n.read ? R.cell("lue le " + R.when(n.read)) : R.el("td", {}, [
      R.el("button", { type: "button", "class": "secondary ack", text: "Marquer comme lue" })
    ]);
    var open = R.el("button", { type: "button", "class": "secondary open", text: "Lire",
                                "aria-label": "Lire : " + R.eventLabel(n.event) + ", " + R.when(n.received) });
    open.addEventListener("click", function () { RelaisReading.open(n, open); });
    var row = R.el("tr", { "data-notification": n.id, "class": n.read ? "read" : "unread" }, [
      R.cell(R.when(n.received)), R.cell(R.eventLabel(n.event)), R.cell(n.sender || "—"),
      R.el("td", {}, [open]), read
    ]);
    var button = row.querySelector("button.ack");
    if (button) {
      button.addEventListener("click", function () {
        act(button, "/notifications/feed/" + encodeURIComponent(n.id) + "/$ack");
      });
    }
    return row;
  }

  function fill(id, rows) {
    var body = document.querySelector("#" + id + " tbody");
    body.textContent = "";
    rows.forEach(function (row) { body.appendChild(row); });
    document.getElementById(id + "-empty").hidden = rows.length > 0;
  }

  function load() {
    R.status("Chargement…");
    return R.feed().then(function (resources) {
      var notifications = resources.map(R.notification);
      return R.tasks("status=requested&_count=200", notifications).then(function (tasks) {
        var now = new Date(), soon = new Date(now.getTime() + SOON_DAYS * 86400000);
        var mine = document.body.getAttribute("data-organisation");
        var open = tasks.filter(function (t) { return t.status === "requested"; });
        var handoffs = open.filter(function (t) {
          return R.taskCode(t) === "handoff" && t.owner && t.owner.identifier && t.owner.identifier.value === mine;
        }).sort(function (a, b) { return (due(a) || "").localeCompare(due(b) || ""); });
        var followups = open.filter(function (t) { return t.intent === "plan"; })
          .sort(function (a, b) { return (due(a) || "").localeCompare(due(b) || ""); });
        var late = followups.filter(function (t) {
          return (t.businessStatus && t.businessStatus.text) || (due(t) && new Date(due(t)) < now);
        });
        var upcoming = followups.filter(function (t) {
          return late.indexOf(t) < 0 && due(t) && new Date(due(t)) <= soon;
        });
        var recent = notifications.slice(-25).reverse();
        var unread = notifications.filter(function (n) { return !n.read; }).length;
        R.tiles("tiles", [
          ["Relais à traiter", handoffs.length, handoffs.length > 0],
          ["Suivis en retard", late.length, late.length > 0],
          ["Suivis dans les " + SOON_DAYS + " jours", upcoming.length],
          ["Notifications non lues", unread]
        ]);
        fill("handoffs", handoffs.map(handoffRow));
        fill("followups", followups.map(function (t) { return followupRow(t, now); }));
        fill("notifications", recent.map(notificationRow));
        R.status("");
        R.loaded();
      });
    }).catch(function (error) { R.status("Échec : " + error.message, true); });
  }

  document.addEventListener("DOMContentLoaded", load);
})();
