/* Relais pages: shared helpers. Data reaches the page only through the public API with the session cookie;
   every value is written with textContent (never as HTML), and nothing is kept in browser storage. */
var Relais = (function () {
  "use strict";
  var SVG_NS = "http://www.w3.org/2000/svg";
  var TASK_CODES = "https://relais.example.org/fhir/CodeSystem/task-code";

  function csrf() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function status(text, isError) {
    var box = document.getElementById("status");
    if (!box) { return; }
    box.textContent = text || "";
    box.className = isError ? "error" : "";
  }

  // People read French (docs/coordination.md): the API's English diagnostics stay for developers; a page says in
  // French what happened, from the few diagnostics a person can act on, else from the HTTP status.
  var KNOWN_ERRORS = [
    [/^team must name/i, "choisissez une équipe inscrite dans Relais"],
    [/cannot be \w+ed now|concurrently/i, "la tâche a changé entre-temps : rechargez la page"],
    [/lines? in one request|members in one request/i, "liste trop longue : envoyez-la en plusieurs fois"],
    [/no patient line/i, "le fichier ne contient aucun patient"]
  ];
  var STATUS_ERRORS = {
    400: "la demande est invalide", 401: "session terminée, reconnectez-vous",
    403: "cette action n'est pas permise à votre organisation", 404: "introuvable (ou déjà traité)",
    409: "conflit : l'élément a changé entre-temps, rechargez la page", 413: "envoi trop volumineux",
    415: "format non pris en charge", 422: "données refusées", 429: "trop de demandes : réessayez dans un instant"
  };

  function diagnostics(result) {
    var issue = result.body && result.body.issue && result.body.issue[0];
    var text = (issue && issue.diagnostics) || "";
    for (var i = 0; i < KNOWN_ERRORS.length; i += 1) {
      if (KNOWN_ERRORS[i][0].test(text)) { return KNOWN_ERRORS[i][1]; }
    }
    return STATUS_ERRORS[result.status] || ("erreur " + result.status + " du service");
  }

  // Every call carries the session cookie (same origin) and, for writes, the page's CSRF token.
  function api(method, url, body) {
    var headers = { Accept: "application/fhir+json" };
    if (method !== "GET") { headers["X-CSRF-Token"] = csrf(); }
    var init = { method: method, headers: headers, credentials: "same-origin", cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/fhir+json";
      init.body = JSON.stringify(body);
    }
    return fetch(url, init).then(function (response) {
      if (response.status === 401) {
        window.location.assign("signin");
        throw new Error("session terminée, reconnectez-vous");
      }
      return response.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (ignored) { data = null; }
        return { status: response.status, ok: response.ok, body: data };
      });
    });
  }

  function must(result) {
    if (!result.ok) { throw new Error(diagnostics(result)); }
    return result.body;
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") { node.textContent = attrs[key]; } else { node.setAttribute(key, attrs[key]); }
    });
    (children || []).forEach(function (child) { if (child) { node.appendChild(child); } });
    return node;
  }

  function svg(tag, attrs, text) {
    var node = document.createElementNS(SVG_NS, tag);
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function when(iso) {
    if (!iso) { return "—"; }
    var moment = new Date(iso);
    if (isNaN(moment.getTime())) { return String(iso); }
    return moment.toLocaleString("fr-FR", { dateStyle: "short", timeStyle: "short", timeZone: "Europe/Paris" });
  }

  // A value of a FHIR Parameters resource by name (value[x], or the parts as an object).
  function param(resource, name) {
    var found = (resource.parameter || []).filter(function (p) { return p.name === name; })[0];
    if (!found) { return undefined; }
    if (found.resource) { return found.resource; }
    if (found.part) {
      var parts = {};
      found.part.forEach(function (part) { parts[part.name] = valueOf(part); });
      return parts;
    }
    return valueOf(found);
  }

  function valueOf(p) {
    var key = Object.keys(p).filter(function (k) { return k.indexOf("value") === 0; })[0];
    var value = key ? p[key] : undefined;
    return value && typeof value === "object" && value.value !== undefined ? value.value : value;
  }

  // The whole feed of the organisation, oldest first (bounded: at most `pages` pages of 200).
  function feed(pages) {
    var items = [];
    function page(cursor, left) {
      var url = "/notifications/feed?limit=200" + (cursor ? "&after=" + encodeURIComponent(cursor) : "");
      return api("GET", url).then(must).then(function (bundle) {
        var entries = bundle.entry || [];
        entries.forEach(function (entry) { items.push(entry.resource); });
        var tag = ((bundle.meta || {}).tag || [])[0];
        if (entries.length === 200 && left > 1 && tag) { return page(tag.code, left - 1); }
        return items;
      });
    }
    return page(null, pages || 5);
  }

  function notification(resource) {
    return {
      id: param(resource, "id"),
      event: param(resource, "event"),
      detail: param(resource, "detail"),
      sender: param(resource, "sender"),
      senderName: param(resource, "sender-name"),
      subject: param(resource, "subject"),
      received: param(resource, "received"),
      read: param(resource, "read"),
      payload: param(resource, "payload")
    };
  }

  function taskCode(task) {
    var codings = (task.code && task.code.coding) || [];
    var own = codings.filter(function (c) { return c.system === TASK_CODES; })[0];
    return own ? own.code : "followup";
  }

  // The caller's Tasks from the FHIR search; where the search is not served yet, the Tasks named in the
  // organisation's full notifications, each read again for its current state (the API scopes both).
  function tasks(query, notifications) {
    return api("GET", "/discharge/fhir/Task?" + query).then(function (result) {
      if (result.ok && result.body && result.body.resourceType === "Bundle") {
        return (result.body.entry || []).map(function (e) { return e.resource; })
          .filter(function (r) { return r && r.resourceType === "Task"; });
      }
      if (result.status !== 404 && result.status !== 405) { throw new Error(diagnostics(result)); }
      var ids = [];
      (notifications || []).forEach(function (n) {
        var bundle = n.payload;
        if (!bundle || bundle.resourceType !== "Bundle") { return; }
        (bundle.entry || []).forEach(function (entry) {
          var r = entry.resource;
          if (r && r.resourceType === "Task" && ids.indexOf(r.id) < 0) { ids.push(r.id); }
        });
      });
      return Promise.all(ids.slice(-100).map(function (id) {
        return api("GET", "/discharge/fhir/Task/" + encodeURIComponent(id)).then(function (r) {
          return r.ok ? r.body : null;
        });
      })).then(function (found) { return found.filter(Boolean); });
    });
  }

  function tiles(target, items) {
    var box = document.getElementById(target);
    box.textContent = "";
    items.forEach(function (item) {
      box.appendChild(el("div", { "class": "tile" + (item[2] ? " alert" : ""), "data-key": item[0] }, [
        el("div", { "class": "v", text: String(item[1]) }),
        el("div", { "class": "k", text: item[0] })
      ]));
    });
  }

  function cell(text, cls) { return el("td", cls ? { "class": cls, text: text } : { text: text }); }

  function tag(text, cls) { return el("span", { "class": "tag " + (cls || ""), text: text }); }

  // Horizontal bars: one row per item, a main value and an optional highlighted part of it.
  function hbars(target, rows, main, part, label) {
    var box = document.getElementById(target);
    box.textContent = "";
    if (!rows.length) { box.appendChild(el("p", { "class": "empty", text: "Aucune donnée sur la période." })); return; }
    var max = Math.max.apply(null, rows.map(function (r) { return r[main]; }).concat([1]));
    // Room for the longest label on the left and for "masqué (petit effectif)" on the right: nothing is cut.
    var longest = Math.max.apply(null, rows.map(function (r) { return String(label(r)).length; }).concat([8]));
    var rowH = 24, left = Math.min(Math.max(120, longest * 7 + 12), 300), width = 260, h = rows.length * rowH + 6;
    var full = left + width + 160;
    // Drawn at its own size (shrunk only on a narrow screen), so the text stays at the page's reading size.
    var chart = svg("svg", { viewBox: "0 0 " + full + " " + h, width: String(full), "class": "chart", role: "img" });
    var said = [];
    rows.forEach(function (r, i) {
      var y = i * rowH + 3, w = (r[main] / max) * width;
      chart.appendChild(svg("text", { x: left - 6, y: y + 15, "text-anchor": "end" }, label(r)));
      chart.appendChild(svg("rect", { x: left, y: y, width: Math.max(w, 1), height: rowH - 6, fill: "#9bbbe0" }));
      if (part) {
        chart.appendChild(svg("rect", { x: left, y: y, width: (r[part] / max) * width, height: rowH - 6,
                                        fill: "#2f6fb3" }));
      }
      // A suppressed cell (too few to publish without singling someone out) shows no number.
      var shown = r.suppressed ? "masqué (petit effectif)" : (part ? r[main] + " / " + r[part] : String(r[main]));
      chart.appendChild(svg("text", { x: left + w + 6, y: y + 15 }, shown));
      said.push(label(r) + " : " + shown);
    });
    describe(chart, said);
    box.appendChild(chart);
    if (rows.some(function (r) { return r.suppressed; })) {
      box.appendChild(el("p", { "class": "help", text: "« Masqué » : l'effectif est trop petit pour être publié "
        + "sans risque de reconnaître un patient ; il reste compté dans les totaux." }));
    }
  }

  // A chart is an image to assistive technologies: it says its values in words.
  function describe(chart, said) {
    var text = said.join(" ; ") || "Aucune donnée";
    chart.setAttribute("aria-label", text);
    chart.insertBefore(svg("title", {}, text), chart.firstChild);
  }

  // Stacked columns: one column per label, one colour per series.
  var COLOURS = ["#2f6fb3", "#c46a00", "#b23b2e", "#6b8e23"];
  function columns(target, labels, series) {
    var box = document.getElementById(target);
    box.textContent = "";
    var totals = labels.map(function (_, i) {
      return series.reduce(function (sum, s) { return sum + s.values[i]; }, 0);
    });
    var max = Math.max.apply(null, totals.concat([1]));
    var colW = Math.max(18, Math.floor(560 / Math.max(labels.length, 1))), h = 170, base = 140;
    var chart = svg("svg", { viewBox: "0 0 " + (labels.length * colW + 20) + " " + h, width: "100%", role: "img" });
    labels.forEach(function (label, i) {
      var x = 10 + i * colW, top = base;
      series.forEach(function (s, k) {
        var bh = (s.values[i] / max) * 120;
        if (bh > 0) {
          top -= bh;
          chart.appendChild(svg("rect", { x: x, y: top, width: colW - 6, height: bh, fill: COLOURS[k % COLOURS.length] }));
        }
      });
      chart.appendChild(svg("text", { x: x + (colW - 6) / 2, y: base + 14, "text-anchor": "middle" }, label));
      if (totals[i]) {
        chart.appendChild(svg("text", { x: x + (colW - 6) / 2, y: top - 3, "text-anchor": "middle" }, String(totals[i])));
      }
    });
    describe(chart, labels.map(function (label, i) { return label + " : " + totals[i]; }));
    box.appendChild(chart);
    var legend = el("div", { "class": "legend" });
    series.forEach(function (s, k) {
      legend.appendChild(el("span", {}, [el("i", { "class": "c" + (k % COLOURS.length) }), document.createTextNode(s.name)]));
    });
    box.appendChild(legend);
  }

  function loaded() { document.body.setAttribute("data-loaded", "true"); }

  var EVENTS = {
    "admission.recorded": "Admission", "admission.corrected": "Admission corrigée",
    "admission.cancelled": "Admission annulée", "discharge.recorded": "Sortie",
    "discharge.corrected": "Sortie corrigée", "discharge.cancelled": "Sortie annulée",
    "handoff.proposed": "Relais proposé", "handoff.accepted": "Relais accepté", "handoff.declined": "Relais refusé",
    "handoff.expired": "Relais expiré", "handoff.cancelled": "Relais annulé", "followup.due": "Suivi à échéance",
    "orientation.requested": "Orientation demandée", "orientation.assigned": "Orientation proposée",
    "orientation.accepted": "Orientation acceptée", "orientation.returned": "Orientation revenue à la CPTS",
    "followup.missed": "Suivi manqué", "snp.requested": "Demande SNP", "snp.offered": "SNP proposé",
    "snp.booked": "SNP réservé", "snp.fulfilled": "SNP honoré", "snp.noshow": "SNP non honoré",
    "snp.expired": "SNP expiré", "snp.cancelled": "SNP annulé", "careteam.changed": "Équipe traitante modifiée",
    "careteam.change-requested": "Demande de changement d'équipe traitante", "notification.read": "Accusé de lecture"
  };
  function eventLabel(code) { return EVENTS[code] || code || "—"; }

  return {
    api: api, must: must, el: el, svg: svg, when: when, param: param, feed: feed, notification: notification,
    tasks: tasks, taskCode: taskCode, tiles: tiles, cell: cell, tag: tag, hbars: hbars, columns: columns,
    status: status, loaded: loaded, eventLabel: eventLabel, diagnostics: diagnostics, describe: describe
  };
})();
