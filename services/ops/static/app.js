// Live updates: the server says which topic changed (server-sent events); the page re-fetches
// its own main element, rendered and escaped on the server, without a reload.
(function () {
  "use strict";
  var main = document.getElementById("live");
  var status = document.getElementById("live-status");
  document.addEventListener("click", function (e) {
    var t = e.target;
    if (t && t.getAttribute && t.getAttribute("data-action") === "print") { window.print(); }
  });
  // Demo: the header's simulated clock ticks on between redraws (origin + real time x speed).
  var sim = document.getElementById("sim-clock");
  var simNow = document.getElementById("sim-now");
  function simText() {
    var at = Number(sim.getAttribute("data-origin")) +
      (Date.now() - Number(sim.getAttribute("data-epoch"))) * Number(sim.getAttribute("data-speed"));
    var opts = {hour: "2-digit", minute: "2-digit", day: "2-digit", month: "2-digit",
                year: "numeric", hour12: false};
    var tz = sim.getAttribute("data-tz");
    if (tz) { opts.timeZone = tz; }
    var p = {};
    new Intl.DateTimeFormat("en-GB", opts).formatToParts(new Date(at)).forEach(function (x) {
      p[x.type] = x.value;
    });
    return document.documentElement.lang === "vi"
      ? p.hour + ":" + p.minute + " " + p.day + "/" + p.month + "/" + p.year
      : p.year + "-" + p.month + "-" + p.day + " " + p.hour + ":" + p.minute;
  }
  if (sim && simNow) {
    setInterval(function () { simNow.textContent = simText(); }, 1000);
  }
  if (!main || !status || !window.EventSource) { return; }
  var topics = (main.getAttribute("data-topics") || "").split(" ").filter(Boolean);
  var busy = false, again = false, last = 0;

  function setLive(on) {
    status.textContent = on ? status.getAttribute("data-on") : status.getAttribute("data-off");
    status.classList.toggle("on", on);
  }

  function fragmentUrl() {
    var url = new URL(window.location.href);
    url.searchParams.set("fragment", "1");
    url.searchParams.delete("lang");
    return url.toString();
  }

  function refresh() {
    if (busy) { again = true; return; }
    var wait = Math.max(0, 500 - (Date.now() - last));
    busy = true;
    setTimeout(function () {
      last = Date.now();
      fetch(fragmentUrl(), {credentials: "same-origin", headers: {"Accept": "text/html"}})
        .then(function (r) {
          if (r.status === 401) { window.location.reload(); throw new Error("signed out"); }
          return r.text();
        })
        .then(function (html) {
          // Keep open <select>/<input> focus: skip a redraw while the filter form is in use.
          var active = document.activeElement;
          if (active && main.contains(active) && /^(SELECT|INPUT)$/.test(active.tagName)) {
            again = true; return;
          }
          main.innerHTML = html;
          var stamp = document.getElementById("updated-at");
          if (stamp) {
            stamp.textContent = (sim && simNow) ? simText()
              : new Date().toLocaleTimeString(document.documentElement.lang);
          }
          document.dispatchEvent(new CustomEvent("lienthong:updated"));
        })
        .catch(function () {})
        .then(function () {
          busy = false;
          if (again) { again = false; refresh(); }
        });
    }, wait);
  }

  var source = new EventSource("/events");
  source.addEventListener("open", function () { setLive(true); });
  source.addEventListener("error", function () { setLive(false); });
  source.addEventListener("hello", function () { setLive(true); });
  topics.forEach(function (topic) {
    source.addEventListener(topic, refresh);
  });
})();
