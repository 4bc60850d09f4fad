// The HTML worklist's filter, search and thumbnail bookkeeping. Plain
// JavaScript, inline in the page: it must work opened from a file share,
// with no server and no network. It only reads the page (data-* attributes
// and form fields) and writes text with textContent, never markup, so no
// value from the studies can become code.
(function () {
  "use strict";
  var body = document.body;
  var rows = Array.prototype.slice.call(document.querySelectorAll("#worklist tbody tr"));
  var boxes = Array.prototype.slice.call(document.querySelectorAll("input[name=band]"));
  var search = document.getElementById("q");
  var shown = document.getElementById("shown");

  // Filters come from the query string or the fragment (#band=URGENT,ROUTINE&q=DES123),
  // so a filtered view can be bookmarked, shared or opened by a test.
  function params() {
    var merged = {};
    [location.search, location.hash].forEach(function (part) {
      part.replace(/^[?#]/, "").split("&").forEach(function (pair) {
        if (!pair) { return; }
        var i = pair.indexOf("=");
        var k = decodeURIComponent((i < 0 ? pair : pair.slice(0, i)).replace(/\+/g, " "));
        merged[k] = i < 0 ? "" : decodeURIComponent(pair.slice(i + 1).replace(/\+/g, " "));
      });
    });
    return merged;
  }

  function apply(remember) {
    var bands = {};
    boxes.forEach(function (b) { if (b.checked) { bands[b.value] = true; } });
    var needle = search.value.trim().toLowerCase();
    var count = 0;
    rows.forEach(function (r) {
      var match = !needle ||
        (r.getAttribute("data-accession") || "").toLowerCase().indexOf(needle) >= 0 ||
        (r.getAttribute("data-patient-id") || "").toLowerCase().indexOf(needle) >= 0;
      var visible = bands[r.getAttribute("data-band")] === true && match;
      r.hidden = !visible;
      if (visible) { count += 1; }
    });
    shown.textContent = String(count);
    body.setAttribute("data-visible-rows", String(count));
    if (remember && history.replaceState) {
      var all = boxes.every(function (b) { return b.checked; });
      var parts = [];
      if (!all) { parts.push("band=" + boxes.filter(function (b) { return b.checked; }).map(function (b) { return encodeURIComponent(b.value); }).join(",")); }
      if (needle) { parts.push("q=" + encodeURIComponent(search.value.trim())); }
      history.replaceState(null, "", location.pathname + location.search + (parts.length ? "#" + parts.join("&") : ""));
    }
  }

  var p = params();
  if (p.band !== undefined) {
    var wanted = {};
    p.band.split(",").forEach(function (b) { wanted[b.trim()] = true; });
    boxes.forEach(function (b) { b.checked = wanted[b.value] === true; });
  }
  if (p.q !== undefined) { search.value = p.q; }
  boxes.forEach(function (b) { b.addEventListener("change", function () { apply(true); }); });
  search.addEventListener("input", function () { apply(true); });
  apply(false);

  // Thumbnails load lazily (a night's worth is large on a file share). Each
  // one that loads or fails is counted on <body>: data-images-loaded,
  // -broken, and -settled once all have. A missing file shows as text, not
  // as a broken image. Printing, or opening with #images=all, loads them all.
  var images = Array.prototype.slice.call(document.querySelectorAll("img.thumb"));
  var loaded = 0, broken = 0;
  function report() {
    body.setAttribute("data-images-total", String(images.length));
    body.setAttribute("data-images-loaded", String(loaded));
    body.setAttribute("data-images-broken", String(broken));
    if (loaded + broken === images.length) { body.setAttribute("data-images-settled", "true"); }
  }
  function done(img) {
    if (img.getAttribute("data-state")) { return; }
    if (img.naturalWidth > 0) {
      loaded += 1;
      img.setAttribute("data-state", "loaded");
    } else {
      broken += 1;
      img.setAttribute("data-state", "broken");
      var note = document.createElement("span");
      note.className = "missing";
      note.textContent = "image missing (" + img.getAttribute("alt") + ")";
      img.parentNode.insertBefore(note, img);
      img.style.display = "none";
    }
    report();
  }
  images.forEach(function (img) {
    if (img.complete && img.getAttribute("src")) {
      done(img);
    } else {
      img.addEventListener("load", function () { done(img); });
      img.addEventListener("error", function () { done(img); });
    }
  });
  function loadAll() { images.forEach(function (img) { img.loading = "eager"; }); }
  if (p.images === "all") { loadAll(); }
  window.addEventListener("beforeprint", loadAll);
  report();
})();
