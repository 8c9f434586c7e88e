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
  // Names from the team's own full-detail notifications (it is in the patient's care circle): INS -> name and
  // birth date, sender id -> name. A minimised notification carries neither, so a patient proposed by the CPTS
  // stays unnamed until the team accepts.
  var people = {}, senders = {};
  function learnNames(notifications) {
    notifications.forEach(function (n) {
      if (n.sender && n.senderName) { senders[n.sender] = n.senderName; }
      var bundle = n.payload;
      if (n.detail !== "full" || !bundle || bundle.resourceType !== "Bundle") { return; }
      (bundle.entry || []).forEach(function (entry) {
        var r = entry.resource, name = r && r.resourceType === "Patient" && (r.name || [])[0];
        if (!name) { return; }
        var label = [(name.given || []).join(" "), name.family].filter(Boolean).join(" ");
        (r.identifier || []).forEach(function (i) { if (i.value && label) { people[i.value] = { name: label, born: r.birthDate }; } });
      });
    });
  }
  function patient(task) {
    var value = ins(task), known = people[value];
    if (!known) { return value; }
    var born = known.born ? ", né(e) le " + known.born.split("-").reverse().join("/") : "";
    return known.name + born + " · INS " + value;
  }
  function hospital(task) { var id = requester(task); return senders[id] || id; }
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
                              input(task, "commune")].filter(Boolean).join(" · ") : patient(task);
    if (task.priority === "urgent") { when.appendChild(document.createTextNode(" ")); when.appendChild(R.tag("complexe", "urgent")); }
    return R.el("tr", { "data-task": task.id }, [
      when, R.cell(who), R.cell(hospital(task)), R.cell(hospitalRef || "—"), R.cell(R.when(due(task))),
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
      R.cell(R.when(end)), R.cell(task.description || "suivi"), R.cell(patient(task)), R.el("td", {}, [state]),
      R.el("td", {}, [R.el("div", { "class": "actions" }, [day, done])])
    ]);
  }

  // What the team's MSSanté mailbox and software said about the mail of a notification (docs/mssante.md).
  var MAIL_LABELS = { delivered: "remis", read: "lu", processed: "intégré", failed: "échec" };

  function mailReceipts() {
    return R.api("GET", "/notifications/mssante/receipts?limit=200").then(function (result) {
      var latest = {};
      (result.ok && Array.isArray(result.body) ? result.body : []).forEach(function (r) {
        // Newest first; a failure outranks what came before it.
        if (!latest[r.notification_id] || r.status === "failed") { latest[r.notification_id] = r; }
      });
      return latest;
    }).catch(function () { return {}; });
  }

  function mailTag(receipt) {
    if (!receipt) { return null; }
    var text = "MSSanté : " + (MAIL_LABELS[receipt.status] || receipt.status);
    if (receipt.status === "failed") { text += " (" + receipt.code + ")"; }
    var tag = R.tag(text, receipt.status === "failed" ? "bad" : "");
    tag.setAttribute("data-mail", receipt.status);
    return tag;
  }

  function notificationRow(n, mail) {
    var event = R.cell(R.eventLabel(n.event));
    var receipt = mailTag(mail[n.id]);
    if (receipt) { event.appendChild(document.createTextNode(" ")); event.appendChild(receipt); }
    var read = n.read ? R.cell("lue le " + R.when(n.read)) : R.el("td", {}, [
      R.el("button", { type: "button", "class": "secondary ack", text: "Marquer comme lue" })
    ]);
    var open = R.el("button", { type: "button", "class": "secondary open", text: "Lire",
                                "aria-label": "Lire : " + R.eventLabel(n.event) + ", " + R.when(n.received) });
    open.addEventListener("click", function () { RelaisReading.open(n, open); });
    var row = R.el("tr", { "data-notification": n.id, "class": n.read ? "read" : "unread" }, [
      R.cell(R.when(n.received)), event, R.cell(n.senderName || n.sender || "—"),
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
    return Promise.all([R.feed(), mailReceipts()]).then(function (loaded) {
      var notifications = loaded[0].map(R.notification), mail = loaded[1];
      learnNames(notifications);
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
        fill("notifications", recent.map(function (n) { return notificationRow(n, mail); }));
        R.status("");
        R.loaded();
      });
    }).catch(function (error) { R.status("Échec : " + error.message, true); });
  }

  // The team's patient list (docs/directory.md): a CSV posted as is; the answer says what became of each line.
  var PANEL = "/admissions/fhir/Group/patientele/$add";
  var OUTCOMES = { enrolled: "inscrits", "already-yours": "déjà dans votre patientèle",
                   "change-requested": "changements d'équipe demandés", refused: "refusés" };

  // Why a line was refused, in French (the API's reasons are English: services/admissions/panels.py).
  var LINE_REASONS = [
    [/^the same patient as line (\d+)/, function (m) { return "même patient que la ligne " + m[1]; }],
    [/^birth date does not match/, "la date de naissance ne correspond pas au NIR"],
    [/^NIR is not valid/, "NIR invalide (15 caractères, les 2 derniers étant la clé)"],
    [/formula/, "nom ou prénom commençant comme une formule de tableur (=, +, -, @)"],
    [/is empty$/, "nom ou prénom manquant"],
    [/printable characters$/, "nom ou prénom trop long ou illisible"],
    [/^birth date is not/, "date de naissance illisible (AAAA-MM-JJ ou JJ/MM/AAAA)"],
    [/^postal code/, "code postal invalide (5 chiffres)"],
    [/^longer than/, "ligne trop longue"],
    [/columns;/, "colonnes manquantes (NIR ; nom ; prénom ; date de naissance ; code postal)"],
    [/concurrently/, "inscription en cours de modification : renvoyez la liste"]
  ];

  function lineReason(text) {
    for (var i = 0; i < LINE_REASONS.length; i += 1) {
      var found = LINE_REASONS[i][0].exec(text || "");
      if (found) { var say = LINE_REASONS[i][1]; return typeof say === "function" ? say(found) : say; }
    }
    return "ligne refusée";
  }

  function uploadPanel(event) {
    event.preventDefault();
    var file = document.getElementById("panel-file").files[0];
    if (!file) { R.status("Choisissez un fichier CSV.", true); return; }
    if (file.size > 900000) { R.status("Fichier trop volumineux : envoyez-le en plusieurs parties.", true); return; }
    var meta = document.querySelector('meta[name="csrf-token"]');
    R.status("Envoi de la liste…");
    file.arrayBuffer().then(function (content) {
      return fetch(PANEL, { method: "POST", credentials: "same-origin", cache: "no-store", body: content,
        headers: { "Content-Type": "text/csv", Accept: "application/fhir+json",
                   "X-CSRF-Token": meta ? meta.getAttribute("content") : "" } });
    }).then(function (response) {
      return response.json().then(function (body) { return { ok: response.ok, status: response.status, body: body }; });
    }).then(function (result) {
      if (!result.ok) { throw new Error(R.diagnostics(result)); }
      var counts = {}, refused = [];
      (result.body.issue || []).slice(1).forEach(function (issue) {
        var code = issue.details && issue.details.coding && issue.details.coding[0].code;
        counts[code] = (counts[code] || 0) + 1;
        if (code === "refused") { refused.push(issue); }
      });
      var summary = document.getElementById("panel-summary");
      summary.textContent = Object.keys(OUTCOMES).filter(function (c) { return counts[c]; })
        .map(function (c) { return counts[c] + " " + OUTCOMES[c]; }).join(", ") || "Aucune ligne.";
      summary.hidden = false;
      fill("panel-refused", refused.slice(0, 200).map(function (issue) {
        var where = (issue.expression || [""])[0].replace(/^line /, "ligne ");
        return R.el("tr", {}, [R.cell(where), R.cell(lineReason(issue.diagnostics))]);
      }));
      document.getElementById("panel-refused").hidden = refused.length === 0;
      R.status("Liste envoyée.");
    }).catch(function (error) { R.status("Échec : " + error.message, true); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("panel-form");
    if (form) { form.addEventListener("submit", uploadPanel); }
  });
  document.addEventListener("DOMContentLoaded", load);
})();
