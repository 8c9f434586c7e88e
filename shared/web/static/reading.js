/* Reading one notification: what its message carries for the care team, grouped (stay, diagnoses, follow-ups,
   referent, documents). Only what the API sent is shown; a minimised notification says so. */
var RelaisReading = (function () {
  "use strict";
  var R = Relais;

  function resources(n) {
    var bundle = n.payload;
    if (!bundle || bundle.resourceType !== "Bundle") { return []; }
    return (bundle.entry || []).map(function (e) { return e.resource; }).filter(Boolean);
  }
  function ofType(all, type) { return all.filter(function (r) { return r.resourceType === type; }); }
  function text(concept) {
    if (!concept) { return ""; }
    var coding = (concept.coding || [])[0] || {};
    return concept.text || coding.display || coding.code || "";
  }
  function inputs(tasks, name) {
    var found = [];
    tasks.forEach(function (t) {
      (t.input || []).forEach(function (i) { if (i.type && i.type.text === name) { found.push(i); } });
    });
    return found;
  }
  function value(i) {
    return i.valueString || (i.valueContactPoint && i.valueContactPoint.value) || i.valueDateTime ||
      (i.valueReference && (i.valueReference.display || i.valueReference.reference)) || "";
  }

  function section(title, found) {
    var items = found.filter(function (item, i) { return item && found.indexOf(item) === i; });
    var list = R.el("ul", {}, items.map(function (item) { return R.el("li", { text: item }); }));
    return R.el("section", { "class": "reading-part" }, [
      R.el("h3", { text: title }),
      items.length ? list : R.el("p", { "class": "empty", text: "Non transmis." })
    ]);
  }

  function parts(n) {
    var all = resources(n), tasks = ofType(all, "Task");
    var stay = ofType(all, "Encounter").map(function (e) {
      var period = e.period || {};
      return "Hospitalisation du " + R.when(period.start) + " au " + R.when(period.end);
    });
    tasks.forEach(function (t) {
      inputs([t], "discharged-at").forEach(function (i) { stay.push("Sortie le " + R.when(i.valueDateTime)); });
      if (t.requester && t.requester.identifier) { stay.push("Établissement : " + t.requester.identifier.value); }
    });
    var diagnoses = ofType(all, "Condition").map(function (c) { return text(c.code) || "diagnostic"; });
    var followups = tasks.filter(function (t) { return t.intent === "plan"; }).map(function (t) {
      var end = t.restriction && t.restriction.period && t.restriction.period.end;
      return (t.description || "suivi") + " — avant le " + R.when(end);
    }).concat(inputs(tasks, "followup").map(function (i) {
      return text(i.type.coding ? { coding: i.type.coding } : null) + " — avant le " + R.when(i.valueDateTime);
    }));
    var referent = ["hospital-referent", "hospital-referent-phone", "hospital-referent-mssante"]
      .map(function (name) { return inputs(tasks, name).map(value).join(", "); }).filter(Boolean);
    var documents = ofType(all, "DocumentReference").map(function (d) {
      return (d.description || text(d.type) || "document") + (d.date ? " (" + R.when(d.date) + ")" : "");
    }).concat(inputs(tasks, "liaison-letter").map(function (i) { return "Lettre de liaison : " + value(i); }));
    return [
      section("Séjour et sortie", stay), section("Diagnostics pour l'équipe de soins", diagnoses),
      section("Suivis prévus", followups), section("Référent hospitalier", referent), section("Documents", documents)
    ];
  }

  function open(n, opener) {
    var box = document.getElementById("reading");
    var body = document.getElementById("reading-body");
    body.textContent = "";
    document.getElementById("reading-title").textContent =
      R.eventLabel(n.event) + " — reçue le " + R.when(n.received) + (n.sender ? " de " + n.sender : "");
    if (!resources(n).length) {
      body.appendChild(R.el("p", { text: "Notification minimisée : elle ne dit que l'événement. Le détail est "
        + "transmis à l'équipe de soins du patient." }));
    } else {
      parts(n).forEach(function (part) { body.appendChild(part); });
    }
    box.hidden = false;
    var close = document.getElementById("reading-close");
    close.onclick = function () { box.hidden = true; if (opener) { opener.focus(); } };
    // Keyboard and screen-reader users land on what they opened.
    document.getElementById("reading-title").focus();
  }

  return { open: open };
})();
