/* trackmon map API: the only code that touches the Leaflet map after the page is built.
 *
 * Python calls window.trackmon.* once per frame with plain data (never HTML). Every string that
 * came from a device is put into the page with textContent, so it is shown, never run.
 * The page talks back through console messages prefixed "trackmon:" followed by JSON.
 */
(function () {
  "use strict";
  const COLORS = { online: "#2e7d32", stale: "#f9a825", offline: "#78909c" };
  const MANY = 60;          // above this many markers, labels only when zoomed in
  const LABEL_ZOOM = 15;
  let map = null, markers = new Map(), trails = new Map(), selected = null, follow = false;
  let trailLength = 200, baseLayer = null, gridLayer = null, banner = null, stopsLayer = null;

  function send(message) { console.log("trackmon:" + JSON.stringify(message)); }

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function icon(d) {
    const root = el("div", "tm-marker");
    const color = COLORS[d.status] || COLORS.offline;
    if (typeof d.heading === "number") {
      const arrow = el("span", "tm-arrow");
      arrow.style.transform = "rotate(" + d.heading + "deg)";
      const svgNS = "http://www.w3.org/2000/svg";
      const svg = document.createElementNS(svgNS, "svg");
      svg.setAttribute("viewBox", "0 0 22 22");
      const path = document.createElementNS(svgNS, "path");
      path.setAttribute("d", "M11 1 L19 20 L11 15.5 L3 20 Z");
      path.setAttribute("fill", color);
      path.setAttribute("stroke", "#fff");
      path.setAttribute("stroke-width", "1.5");
      svg.appendChild(path);
      arrow.appendChild(svg);
      root.appendChild(arrow);
    } else {
      const dot = el("span", "tm-dot");
      dot.style.background = color;
      root.appendChild(dot);
    }
    if (d.id === selected) root.classList.add("tm-selected");
    return L.divIcon({ html: root, className: "", iconSize: [22, 22], iconAnchor: [11, 11] });
  }

  function popup(d) {
    const box = el("div", "tm-popup");
    box.appendChild(el("div", "tm-title", d.name ? d.name + " · " + d.id : d.id));
    const table = el("table");
    const num = (v, unit, digits) => (typeof v === "number" ? v.toFixed(digits || 0) + (unit ? " " + unit : "") : "");
    const fields = [
      ["Status", d.status],
      ["Last fix (UTC)", typeof d.ts === "number" ? new Date(d.ts * 1000).toISOString().slice(0, 19).replace("T", " ") : ""],
      ["Speed", num(d.speed, "km/h")],
      ["Heading", num(d.heading, "°")],
      ["Satellites", num(d.sats)],
      ["Messages", num(d.count)],
    ];
    for (const [label, value] of fields) {
      const row = el("tr");
      row.appendChild(el("th", null, label));
      row.appendChild(el("td", null, value));
      table.appendChild(row);
    }
    box.appendChild(table);
    return box;
  }

  function label(d) { return el("span", null, d.name || d.id); }

  function overlaps(r, p) { return r.left < p.right && r.right > p.left && r.top < p.bottom && r.bottom > p.top; }

  /* Many devices and zoomed out: no labels at all. Otherwise hide each label that would cover one
   * already placed, placing the selected device's label first. */
  function declutter() {
    const crowded = markers.size > MANY && map.getZoom() < LABEL_ZOOM;
    map.getContainer().classList.toggle("tm-many", crowded);
    if (crowded) return;
    const placed = [];
    const order = [...markers.entries()].sort(([a], [b]) => (b === selected) - (a === selected));
    for (const [, m] of order) {
      const node = m.getTooltip() && m.getTooltip().getElement();
      if (!node) continue;
      node.style.visibility = "";
      const r = node.getBoundingClientRect();
      if (!r.width) continue;
      if (placed.some((p) => overlaps(r, p))) node.style.visibility = "hidden";
      else placed.push(r);
    }
  }

  function upsert(d) {
    let m = markers.get(d.id);
    const pos = [d.lat, d.lon];
    if (!m) {
      m = L.marker(pos, { icon: icon(d), keyboard: false });
      m.bindTooltip(label(d), { permanent: true, direction: "right", offset: [12, 0], className: "tm-label" });
      m.bindPopup(() => popup(m._tm));
      m.on("click", () => send({ select: d.id }));
      m.addTo(map);
      markers.set(d.id, m);
    } else {
      m.setLatLng(pos);
      m.setIcon(icon(d));
      if (m._tm.name !== d.name) m.setTooltipContent(label(d));
    }
    m._tm = d;
    if (m.isPopupOpen()) m.setPopupContent(popup(d));
    let t = trails.get(d.id);
    if (!t) {
      t = L.polyline([], { color: COLORS[d.status] || COLORS.offline, weight: 2.5, opacity: 0.7,
                           interactive: false });
      t.addTo(map);
      trails.set(d.id, t);
    }
    if (d.trail) t.setLatLngs(d.trail);
    else if (d.append) for (const p of d.append) t.addLatLng(p);
    const pts = t.getLatLngs();
    if (pts.length > trailLength) t.setLatLngs(pts.slice(pts.length - trailLength));
    t.setStyle({ color: d.id === selected ? "#1e88e5" : (COLORS[d.status] || COLORS.offline),
                 opacity: d.id === selected ? 0.95 : 0.6 });
  }

  const api = {
    init(leafletMap, options) {
      map = leafletMap;
      options = options || {};
      gridLayer = new (L.GridLayer.extend({
        createTile(coords) {
          const tile = document.createElement("canvas");
          const size = this.getTileSize();
          tile.width = size.x; tile.height = size.y;
          const ctx = tile.getContext("2d");
          ctx.fillStyle = "#eef1f4"; ctx.fillRect(0, 0, size.x, size.y);
          ctx.strokeStyle = "#cfd8dc"; ctx.lineWidth = 1;
          ctx.strokeRect(0.5, 0.5, size.x, size.y);
          ctx.strokeStyle = "#e3e8eb";
          ctx.beginPath(); ctx.moveTo(size.x / 2, 0); ctx.lineTo(size.x / 2, size.y);
          ctx.moveTo(0, size.y / 2); ctx.lineTo(size.x, size.y / 2); ctx.stroke();
          return tile;
        }
      }))({ zIndex: 0 });
      gridLayer.addTo(map);
      api.setBaseLayer(options.tileUrl || "", options.attribution || "", options.maxZoom || 19);
      const Toolbar = L.Control.extend({
        onAdd() {
          const bar = el("div", "tm-toolbar leaflet-bar");
          const fit = el("button", null, "⤢"); fit.title = "Fit all devices";
          fit.onclick = (e) => { e.stopPropagation(); api.fitAll(); };
          const fol = el("button", null, "◎"); fol.title = "Follow the selected device"; fol.id = "tm-follow";
          fol.onclick = (e) => { e.stopPropagation(); api.setFollow(!follow); send({ follow: follow }); };
          bar.append(fit, fol);
          L.DomEvent.disableClickPropagation(bar);
          return bar;
        }
      });
      new Toolbar({ position: "topleft" }).addTo(map);
      map.on("zoomend moveend", declutter);
      map.on("dragstart", () => { if (follow) { api.setFollow(false); send({ follow: false }); } });
      send({ ready: true });
    },

    setBaseLayer(url, attribution, maxZoom) {
      if (baseLayer) { map.removeLayer(baseLayer); baseLayer = null; }
      if (url) {
        baseLayer = L.tileLayer(url, { attribution: attribution, maxZoom: maxZoom || 19, zIndex: 1 });
        let loaded = false;
        baseLayer.on("tileload", () => { loaded = true; api.setBanner(""); });
        baseLayer.on("tileerror", () => {
          if (!loaded) api.setBanner("Map tiles unavailable — positions and trails are still shown");
        });
        baseLayer.addTo(map);
        api.setBanner("");
      } else {
        api.setBanner("No map tiles — choose a tile URL or an MBTiles file in Settings");
      }
    },

    setBanner(text) {
      if (!banner) {
        banner = L.control({ position: "bottomright" });
        banner.onAdd = () => el("div", "tm-banner");
        banner.addTo(map);
      }
      banner.getContainer().textContent = text || "";
      banner.getContainer().style.display = text ? "" : "none";
    },

    update(devices) {
      for (const d of devices) upsert(d);
      declutter();
      if (follow && selected && markers.has(selected)) map.panTo(markers.get(selected).getLatLng(), { animate: false });
    },

    /* The same as update(), from compact arrays (what Python sends each frame):
     * [id, name, lat, lon, heading, status, ts, speed, sats, count, trail|null, append|null] */
    updatePacked(rows) {
      api.update(rows.map((r) => ({ id: r[0], name: r[1], lat: r[2], lon: r[3], heading: r[4], status: r[5],
                                    ts: r[6], speed: r[7], sats: r[8], count: r[9], trail: r[10],
                                    append: r[11] })));
    },

    remove(ids) {
      for (const id of ids) {
        if (markers.has(id)) { map.removeLayer(markers.get(id)); markers.delete(id); }
        if (trails.has(id)) { map.removeLayer(trails.get(id)); trails.delete(id); }
      }
    },

    clear() { api.remove([...markers.keys()]); selected = null; },

    select(id, focus) {
      const before = selected;
      selected = id;
      for (const other of [before, id]) {
        if (other && markers.has(other)) { const m = markers.get(other); m.setIcon(icon(m._tm)); upsert(m._tm); }
      }
      if (id && focus && markers.has(id)) map.setView(markers.get(id).getLatLng(), Math.max(map.getZoom(), 15), { animate: false });
      declutter();
    },

    setFollow(on) {
      follow = !!on;
      const button = document.getElementById("tm-follow");
      if (button) button.classList.toggle("tm-on", follow);
      if (follow && selected && markers.has(selected)) map.panTo(markers.get(selected).getLatLng(), { animate: false });
    },

    fitAll() {
      const points = [...markers.values()].map((m) => m.getLatLng());
      if (points.length === 1) map.setView(points[0], 15, { animate: false });
      else if (points.length) map.fitBounds(L.latLngBounds(points), { padding: [30, 30], maxZoom: 16, animate: false });
    },

    /* Replay: stops as small squares with a tooltip ([lat, lon, label] each; labels are text). */
    setStops(stops) {
      if (!stopsLayer) stopsLayer = L.layerGroup().addTo(map);
      stopsLayer.clearLayers();
      for (const [lat, lon, label] of stops) {
        const square = L.marker([lat, lon], { icon: L.divIcon({ html: el("div", "tm-stop"), className: "",
                                                                 iconSize: [12, 12], iconAnchor: [6, 6] }),
                                              keyboard: false, zIndexOffset: -1000 });
        square.bindTooltip(el("span", null, label));
        stopsLayer.addLayer(square);
      }
    },

    openPopup(id) { if (markers.has(id)) markers.get(id).openPopup(); },

    setTrailLength(n) { trailLength = n; },

    state() {
      const c = map.getCenter();
      const stopCount = stopsLayer ? stopsLayer.getLayers().length : 0;
      const positions = {};
      for (const [id, m] of markers) { const p = m.getLatLng(); positions[id] = [p.lat, p.lng]; }
      const trailSizes = {};
      for (const [id, t] of trails) trailSizes[id] = t.getLatLngs().length;
      return JSON.stringify({ devices: markers.size, selected: selected, follow: follow, zoom: map.getZoom(),
                              stops: stopCount,
                              center: [c.lat, c.lng], positions: positions, trails: trailSizes,
                              labels: [...document.querySelectorAll(".tm-label")].map((n) => n.textContent),
                              visibleLabels: [...document.querySelectorAll(".tm-label")]
                                .filter((n) => n.style.visibility !== "hidden" && getComputedStyle(n).display !== "none")
                                .map((n) => n.textContent) });
    },
  };
  window.trackmon = api;
})();
