// probe dashboard: SVG download of figures, click-to-enlarge pictures, keyboard navigation
// between units (left/right arrows follow the unit page's previous/next links).
(function () {
  document.addEventListener("click", function (event) {
    var button = event.target.closest(".download-svg");
    if (button) {
      var holder = document.getElementById(button.getAttribute("data-graph"));
      var plot = holder && holder.querySelector(".js-plotly-plot");
      if (plot && window.Plotly) {
        window.Plotly.downloadImage(plot, {format: "svg",
                                           filename: button.getAttribute("data-file")});
      }
      return;
    }
    var overlay = event.target.closest(".zoom-overlay");
    if (overlay) { overlay.remove(); return; }
    var image = event.target.closest("img.zoomable");
    if (image) {
      var layer = document.createElement("div");
      layer.className = "zoom-overlay";
      var big = document.createElement("img");
      big.src = image.src;
      big.alt = image.alt;
      layer.appendChild(big);
      document.body.appendChild(layer);
    }
  });
  document.addEventListener("keydown", function (event) {
    var tag = (event.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || event.altKey || event.ctrlKey ||
        event.metaKey) { return; }
    if (event.key === "Escape") {
      document.querySelectorAll(".zoom-overlay").forEach(function (e) { e.remove(); });
    }
    var id = event.key === "ArrowLeft" ? "unit-prev" : event.key === "ArrowRight" ?
      "unit-next" : null;
    var link = id && document.getElementById(id);
    if (link) { link.click(); }
  });
})();
