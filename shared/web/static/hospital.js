/* The hospital's page: its handoffs and their states (requested, accepted, declined with reason, expired). */
(function () {
  "use strict";
  var R = Relais;
  var ORDER = { requested: 0, rejected: 1, failed: 2, accepted: 3, cancelled: 4 };

  function state(task) {
    var reason = task.statusReason && task.statusReason.text;
    if (task.status === "accepted") { return R.tag("Accepté", "good"); }
    if (task.status === "rejected") { return R.tag("Refusé" + (reason ? " : " + reason : ""), "bad"); }
    if (task.status === "failed") { return R.tag("Expiré sans réponse", "late"); }
    if (task.status === "cancelled") { return R.tag("Annulé"); }
    return R.tag("En attente de réponse");
  }
  function value(reference) { return reference && reference.identifier ? reference.identifier.value : "—"; }
  function due(task) { return task.restriction && task.restriction.period && task.restriction.period.end; }

  function load() {
    R.status("Chargement…");
    return R.api("GET", "/discharge/fhir/Task?code=handoff&_count=200").then(R.must).then(function (bundle) {
      var tasks = (bundle.entry || []).map(function (e) { return e.resource; })
        .filter(function (t) { return t && t.resourceType === "Task" && R.taskCode(t) === "handoff"; })
        .sort(function (a, b) {
          return ((ORDER[a.status] || 0) - (ORDER[b.status] || 0)) || (b.authoredOn || "").localeCompare(a.authoredOn || "");
        });
      var body = document.querySelector("#hospital-handoffs tbody");
      body.textContent = "";
      tasks.forEach(function (task) {
        body.appendChild(R.el("tr", { "data-task": task.id, "data-state": task.status }, [
          R.cell(R.when(task.authoredOn)), R.cell(value(task["for"])), R.cell(value(task.owner)),
          R.el("td", {}, [state(task)]), R.cell(task.status === "requested" ? R.when(due(task)) : "—")
        ]));
      });
      document.getElementById("hospital-handoffs-empty").hidden = tasks.length > 0;
      var count = function (s) { return tasks.filter(function (t) { return t.status === s; }).length; };
      R.tiles("tiles", [
        ["En attente de réponse", count("requested")], ["Acceptés", count("accepted")],
        ["Refusés", count("rejected"), count("rejected") > 0], ["Expirés", count("failed"), count("failed") > 0]
      ]);
      R.status("");
      R.loaded();
    }).catch(function (error) { R.status("Échec : " + error.message, true); });
  }

  document.addEventListener("DOMContentLoaded", load);
})();
