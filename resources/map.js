/* trackmon map API: the only code that touches the Leaflet map after the page is built.
 *
 * Python calls window.trackmon.* once per slice of changed devices with plain data (never HTML).
 * Every string that came from a device is put into the page with textContent, so it is shown,
 * never run. The page talks back through console messages prefixed "trackmon:" followed by JSON.
 *
 * The view: until the user pans or zooms it follows the fleet (fits every shown device when the
 * first fixes arrive and again whenever a device is outside it); "Fit all" goes back to that. A
 * small control on the map says which of the three it is doing. Markers are grouped with
 * Leaflet.markercluster (shipped offline by the xstatic-leaflet-markercluster package) so that a
 * thousand devices in a few streets read as numbered clusters, not one blob.
 */
(function () {
  "use strict";
  const COLORS = { online: "#2e7d32", stale: "#f9a825", offline: "#78909c" };
  const MANY = 60;          // above this many markers on screen, labels only when zoomed in
  const LABEL_ZOOM = 15;
  const FOCUS_ZOOM = 16;    // a focused device is shown at least this close; clusters open from here on
  const FIT = { padding: [40, 40], maxZoom: 15, animate: false };
  const CLUSTER_RADIUS = { few: 22, wide: 45, many: 150 };  // pixels; wide above `many` devices
  const VIEW_TEXT = {
    waiting: "Following the fleet — waiting for positions",
    fleet: "Following the fleet",
    device: "Following the selected device",
    fixed: "View fixed — Fit all to resume",
  };
  let map = null, markers = new Map(), trails = new Map(), selected = null, follow = false;
  let trailLength = 200, baseLayer = null, gridLayer = null, banner = null, stopsLayer = null;
  let layer = null;         // holds the shown markers: a marker cluster group (a plain group without the plugin)
  let visible = null;       // ids the device list's filter lets through (null: all)
  let view = "fleet";       // "fleet" (fit every shown device), "device" (follow the selected one), "fixed"
  let viewControl = null, programmatic = 0;
  // Trails are drawn on one canvas (Leaflet's canvas renderer: one redraw per animation frame of
  // the area that changed) rather than as a thousand SVG paths re-laid out on every update.
  let trailRenderer = null;

  function send(message) { console.log("trackmon:" + JSON.stringify(message)); }

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  /* What an icon looks like apart from its heading: when only the heading changed, the arrow is
   * turned in place (see setLook) instead of a new icon being built, laid out and drawn. */
  function iconKey(d) {
    return (d.status || "") + "|" + (typeof d.heading === "number") + "|" + (d.id === selected);
  }

  function icon(d) {
    const root = el("div", "tm-marker");
    root.dataset.id = d.id;  // an attribute value set through the DOM: text, never markup
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
    const made = L.divIcon({ html: root, className: "", iconSize: [22, 22], iconAnchor: [11, 11] });
    made._tmKey = iconKey(d);
    made._tmArrow = root.firstChild.classList.contains("tm-arrow") ? root.firstChild : null;
    made._tmHeading = d.heading;
    return made;
  }

  /* Give a marker the icon for ``d``. Under a backlog every device turns every frame, and a new
   * icon per device per call is a new element to lay out and draw (~4 ms of a 250-device call,
   * measured): here the same element is kept while only the heading changes (Leaflet's DivIcon
   * re-uses the html element it was given, also when a cluster opens). */
  function setLook(m, d) {
    const current = m.options.icon;
    if (current._tmKey === iconKey(d)) {
      if (current._tmArrow && current._tmHeading !== d.heading) {
        current._tmArrow.style.transform = "rotate(" + d.heading + "deg)";
        current._tmHeading = d.heading;
      }
    } else {
      m.setIcon(icon(d));
    }
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

  function shown(id) { return visible === null || visible.has(id); }

  /* Markers drawn on their own right now (not inside a cluster, not filtered out). */
  function onScreen() { return [...markers.entries()].filter(([, m]) => m._icon); }

  /* Many markers on screen and zoomed out: no labels at all. Otherwise hide each label that would
   * cover one already placed, placing the selected device's label first. */
  function declutter() {
    const drawn = onScreen();
    const crowded = drawn.length > MANY && map.getZoom() < LABEL_ZOOM;
    map.getContainer().classList.toggle("tm-many", crowded);
    if (crowded) return;
    const placed = [];
    drawn.sort(([a], [b]) => (b === selected) - (a === selected));
    for (const [, m] of drawn) {
      const node = m.getTooltip() && m.getTooltip().getElement();
      if (!node) continue;
      node.style.visibility = "";
      const r = node.getBoundingClientRect();
      if (!r.width) continue;
      if (placed.some((p) => overlaps(r, p))) node.style.visibility = "hidden";
      else placed.push(r);
    }
  }

  /* Move the view without it counting as the user's doing. */
  function moveView(change) {
    programmatic += 1;
    try { change(); } finally { programmatic -= 1; }
  }

  function setView(mode) {
    view = mode;
    if (!viewControl) return;
    const node = viewControl.getContainer();
    const text = mode === "fleet" && !shownPoints().length ? VIEW_TEXT.waiting : VIEW_TEXT[mode];
    if (node.textContent !== text) node.textContent = text;
    node.classList.toggle("tm-view-fixed", mode === "fixed");
    node.title = mode === "fixed" ? "Click to fit all devices and follow the fleet again" : "";
  }

  function shownPoints() {
    const points = [];
    for (const [id, m] of markers) if (shown(id)) points.push(m.getLatLng());
    return points;
  }

  /* Fit every shown device: now (force), or when one is outside the view or the fleet would fit
   * a zoom level closer (it shrank or drifted). A zoom level is a factor of two, so vehicles
   * moving about do not make the view pump in and out. */
  function fitFleet(force) {
    const points = shownPoints();
    if (!points.length) return;
    const bounds = L.latLngBounds(points);
    if (!force && map.getBounds().pad(-0.03).contains(bounds)
        && Math.min(map.getBoundsZoom(bounds, false, L.point(80, 80)), FIT.maxZoom) <= map.getZoom()) return;
    moveView(() => {
      if (points.length === 1 || bounds.getNorthEast().equals(bounds.getSouthWest())) {
        map.setView(points[0], FIT.maxZoom, { animate: false });
      } else {
        map.fitBounds(bounds, FIT);
      }
    });
  }

  function userMoved() {
    if (programmatic) return;
    if (follow) { api.setFollow(false); send({ follow: false }); }
    if (view !== "fixed") setView("fixed");
  }

  function showMarker(m, on) {
    if (on === !!m._tmShown) return;
    m._tmShown = on;
    if (on) layer.addLayer(m); else layer.removeLayer(m);
    const t = trails.get(m._tm.id);
    if (t) { if (on) t.addTo(map); else map.removeLayer(t); }
  }

  /* Update one device; returns its marker when it is new (to be added in bulk). A shown marker
   * that moved is collected in ``moved`` (re-filed in bulk by update()); a hidden one is not in
   * the cluster group and simply moves. */
  function upsert(d, moved) {
    let m = markers.get(d.id);
    const pos = [d.lat, d.lon];
    let fresh = null;
    if (!m) {
      m = L.marker(pos, { icon: icon(d), keyboard: false });
      m.bindTooltip(label(d), { permanent: true, direction: "right", offset: [12, 0], className: "tm-label" });
      m.bindPopup(() => popup(m._tm));
      m.on("click", () => send({ select: d.id }));
      markers.set(d.id, m);
      fresh = m;
    } else {
      const old = m.getLatLng();
      if (old.lat !== d.lat || old.lng !== d.lon) {
        if (m._tmShown && moved) moved.push([m, pos]); else m.setLatLng(pos);
      }
      setLook(m, d);
      if (m._tm.name !== d.name) m.setTooltipContent(label(d));
    }
    m._tm = d;
    if (m.isPopupOpen()) m.setPopupContent(popup(d));
    let t = trails.get(d.id);
    if (!t) {
      t = L.polyline([], { color: COLORS[d.status] || COLORS.offline, weight: 2.5, opacity: 0.7,
                           interactive: false, renderer: trailRenderer || undefined });
      if (shown(d.id)) t.addTo(map);
      trails.set(d.id, t);
    }
    // One setLatLngs per device and call: Leaflet projects a line's every point again whenever a
    // point is added, so adding the new points one by one cost (points appended × trail length)
    // per device — the page's time per call grew with the trails, to ~0.5 s per 250 devices.
    let points = null;
    if (d.trail) points = d.trail;
    else if (d.append && d.append.length) points = (t._tmPoints || []).concat(d.append);
    else if (t._tmPoints && t._tmPoints.length > trailLength) points = t._tmPoints;  // the length was cut
    if (points) {
      if (points.length > trailLength) points = points.slice(points.length - trailLength);
      t._tmPoints = points;
      t.setLatLngs(points);
    }
    const color = d.id === selected ? "#1e88e5" : (COLORS[d.status] || COLORS.offline);
    if (t._tmColor !== color) {  // a style set again is drawn again
      t._tmColor = color;
      t.setStyle({ color, opacity: d.id === selected ? 0.95 : 0.6 });
    }
    return fresh;
  }

  /* The group the markers live in: clusters within ``radius`` pixels (a small fleet stays arrows,
   * a large one gets wider clusters that do not pile up). */
  function markerLayer(radius) {
    const group = typeof L.markerClusterGroup === "function"
      ? L.markerClusterGroup({ maxClusterRadius: radius, disableClusteringAtZoom: FOCUS_ZOOM, animate: false,
                               showCoverageOnHover: false, spiderfyOnMaxZoom: false,
                               iconCreateFunction: clusterIcon })
      : L.layerGroup();
    group._tmRadius = radius;
    if (group.on) group.on("animationend", declutter);
    return group;
  }

  /* Past CLUSTER_RADIUS.many devices, move every marker into a group with the wider radius (once). */
  function widenClusters() {
    if (typeof L.markerClusterGroup !== "function" || layer._tmRadius === CLUSTER_RADIUS.wide
        || markers.size <= CLUSTER_RADIUS.many) return;
    const shownMarkers = [...markers.values()].filter((m) => m._tmShown);
    layer.clearLayers();  // also stops the old group listening to the markers
    map.removeLayer(layer);
    layer = markerLayer(CLUSTER_RADIUS.wide);
    layer.addTo(map);
    layer.addLayers(shownMarkers);
  }

  /* Cluster icons: the count (a number, never a device string), coloured by how many are online. */
  function clusterIcon(cluster) {
    const children = cluster.getAllChildMarkers();
    const online = children.filter((m) => m._tm && m._tm.status === "online").length;
    const share = online / children.length;
    const tone = share >= 0.5 ? "tm-cluster-online" : (share > 0 ? "tm-cluster-mixed" : "tm-cluster-offline");
    const size = children.length < 10 ? 28 : children.length < 100 ? 34 : 40;
    const root = el("div", "tm-cluster " + tone);
    root.appendChild(el("span", null, String(children.length)));
    return L.divIcon({ html: root, className: "", iconSize: [size, size], iconAnchor: [size / 2, size / 2] });
  }

  const api = {
    init(leafletMap, options) {
      map = leafletMap;
      options = options || {};
      trailRenderer = L.canvas({ padding: 0.1 });
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
      // Documented options of Leaflet.markercluster 1.4 (its README): clusters open at FOCUS_ZOOM,
      // no animations (cheaper under software rendering), no coverage polygons.
      if (!map.options.maxZoom) map.setMaxZoom(19);  // the cluster group needs a fixed maximum
      layer = markerLayer(CLUSTER_RADIUS.few);
      layer.addTo(map);
      const Toolbar = L.Control.extend({
        onAdd() {
          const bar = el("div", "tm-toolbar leaflet-bar");
          const fit = el("button", null, "⤢"); fit.title = "Fit all devices and follow the fleet";
          fit.onclick = (e) => { e.stopPropagation(); api.fitAll(); };
          const fol = el("button", null, "◎"); fol.title = "Follow the selected device"; fol.id = "tm-follow";
          fol.onclick = (e) => { e.stopPropagation(); api.setFollow(!follow); send({ follow: follow }); };
          bar.append(fit, fol);
          L.DomEvent.disableClickPropagation(bar);
          return bar;
        }
      });
      new Toolbar({ position: "topleft" }).addTo(map);
      viewControl = L.control({ position: "bottomleft" });
      viewControl.onAdd = () => {
        const node = el("div", "tm-view");
        node.id = "tm-view";
        node.onclick = (e) => { e.stopPropagation(); if (view === "fixed") { api.fitAll(); send({ fitted: true }); } };
        L.DomEvent.disableClickPropagation(node);
        return node;
      };
      viewControl.addTo(map);
      setView(view);
      map.on("zoomend moveend", declutter);
      // Any move the page did not make itself is the user's (drag, wheel, keys, a cluster click).
      map.on("movestart zoomstart", userMoved);
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
      const fresh = [], moved = [];
      for (const d of devices) {
        const m = upsert(d, moved);
        if (m) fresh.push(m);
      }
      if (moved.length > 8 && layer.removeLayers) {
        // Many moves: out of the group in bulk, moved, back in bulk (one re-clustering, not one per
        // marker). _ignoreMove is markercluster's own flag for markers it moves itself (1.4.1,
        // assumed, not documented): without it each setLatLng would also re-file its marker.
        const ms = moved.map(([m]) => m);
        const open = ms.filter((m) => m.isPopupOpen());
        layer.removeLayers(ms);
        layer._ignoreMove = true;
        try { for (const [m, pos] of moved) m.setLatLng(pos); } finally { layer._ignoreMove = false; }
        layer.addLayers(ms);
        for (const m of open) m.openPopup();
      } else {
        // A few: setLatLng, and the group re-files each (it listens to its markers' "move", README).
        for (const [m, pos] of moved) m.setLatLng(pos);
      }
      const add = fresh.filter((m) => shown(m._tm.id));
      for (const m of add) m._tmShown = true;
      if (add.length) layer.addLayers ? layer.addLayers(add) : add.forEach((m) => layer.addLayer(m));
      if (fresh.length) widenClusters();
      if (view === "fleet") fitFleet(add.length > 0);  // the fleet grew, or a device left the view
      if (view === "fleet" || fresh.length) setView(view);
      if (follow && selected && markers.has(selected)) {
        moveView(() => map.panTo(markers.get(selected).getLatLng(), { animate: false }));
      }
      declutter();
    },

    /* The same as update(), from compact arrays (what Python sends each frame):
     * [id, name, lat, lon, heading, status, ts, speed, sats, count, trail|null, append|null] */
    updatePacked(rows) {
      api.update(rows.map((r) => ({ id: r[0], name: r[1], lat: r[2], lon: r[3], heading: r[4], status: r[5],
                                    ts: r[6], speed: r[7], sats: r[8], count: r[9], trail: r[10],
                                    append: r[11] })));
      return rows.length;
    },

    /* Show only these devices (the device list's filter), or all of them (null). */
    setVisible(ids) {
      visible = ids === null || ids === undefined ? null : new Set(ids);
      const hide = [], show = [];
      for (const [id, m] of markers) {
        const on = shown(id);
        if (on !== !!m._tmShown) (on ? show : hide).push(m);
      }
      // One by one for hiding: only removeLayer() also stops the group listening to the marker's
      // moves (bulk removeLayers() in markercluster 1.4.1 keeps listening, and a hidden marker that
      // moved would be added back). Showing in bulk.
      for (const m of hide) showMarker(m, false);
      for (const m of show) {
        m._tmShown = true;
        const t = trails.get(m._tm.id);
        if (t) t.addTo(map);
      }
      if (show.length) layer.addLayers ? layer.addLayers(show) : show.forEach((m) => layer.addLayer(m));
      if (view === "fleet") fitFleet(true);
      setView(view);
      declutter();
    },

    remove(ids) {
      for (const id of ids) {
        if (markers.has(id)) { showMarker(markers.get(id), false); markers.delete(id); }
        if (trails.has(id)) { map.removeLayer(trails.get(id)); trails.delete(id); }
      }
    },

    clear() { api.remove([...markers.keys()]); selected = null; setView(view); },

    select(id, focus) {
      const before = selected;
      selected = id;
      for (const other of [before, id]) {
        // Restyled as it is (its icon key holds "selected"); not its last update's new points again.
        if (other && markers.has(other)) { const m = markers.get(other); upsert({ ...m._tm, trail: null, append: null }, null); }
      }
      if (id && focus && markers.has(id)) {
        // The user asked to look at this device: the view is theirs from now on.
        moveView(() => map.setView(markers.get(id).getLatLng(), Math.max(map.getZoom(), FOCUS_ZOOM),
                                   { animate: false }));
        if (view === "fleet") setView("fixed");
      }
      declutter();
    },

    setFollow(on) {
      follow = !!on;
      const button = document.getElementById("tm-follow");
      if (button) button.classList.toggle("tm-on", follow);
      if (follow) {
        setView("device");
        if (selected && markers.has(selected)) {
          moveView(() => map.panTo(markers.get(selected).getLatLng(), { animate: false }));
        }
      } else if (view === "device") {
        setView("fixed");
      }
    },

    /* Fit every shown device and follow the fleet again (until the user moves the view). */
    fitAll() {
      if (follow) { follow = false; api.setFollow(false); send({ follow: false }); }
      setView("fleet");
      fitFleet(true);
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

    openPopup(id) {
      const m = markers.get(id);
      if (!m || !m._tmShown) return;
      if (layer.zoomToShowLayer) layer.zoomToShowLayer(m, () => m.openPopup());
      else m.openPopup();
    },

    setTrailLength(n) { trailLength = n; },

    /* A device's trail as drawn: its points and colour (introspection, like state()). */
    trail(id) {
      const t = trails.get(id);
      return JSON.stringify(t ? { points: t.getLatLngs().map((p) => [p.lat, p.lng]), color: t.options.color } : null);
    },

    state() {
      const c = map.getCenter();
      const stopCount = stopsLayer ? stopsLayer.getLayers().length : 0;
      const positions = {};
      for (const [id, m] of markers) { const p = m.getLatLng(); positions[id] = [p.lat, p.lng]; }
      const trailSizes = {};
      for (const [id, t] of trails) trailSizes[id] = t.getLatLngs().length;
      const b = map.getBounds();
      const inView = [...markers.entries()].filter(([id, m]) => shown(id) && b.contains(m.getLatLng())).length;
      return JSON.stringify({ devices: markers.size, selected: selected, follow: follow, zoom: map.getZoom(),
                              stops: stopCount, view: view,
                              viewText: viewControl ? viewControl.getContainer().textContent : "",
                              clustered: typeof L.markerClusterGroup === "function",
                              shown: [...markers.values()].filter((m) => m._tmShown).length,
                              inView: inView,
                              onScreen: onScreen().length,
                              clusters: document.querySelectorAll(".tm-cluster").length,
                              markerIcons: document.querySelectorAll(".leaflet-marker-pane .leaflet-marker-icon").length,
                              bounds: [[b.getSouth(), b.getWest()], [b.getNorth(), b.getEast()]],
                              center: [c.lat, c.lng], positions: positions, trails: trailSizes,
                              labels: [...document.querySelectorAll(".tm-label")].map((n) => n.textContent),
                              visibleLabels: [...document.querySelectorAll(".tm-label")]
                                .filter((n) => n.style.visibility !== "hidden" && getComputedStyle(n).display !== "none")
                                .map((n) => n.textContent) });
    },
  };
  window.trackmon = api;
})();
