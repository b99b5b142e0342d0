// ferlab serve page: live webcam over a websocket, and photo/video uploads.
// Plain JS, no build step and nothing from a CDN: the page must work offline.
// The last drawn results are exposed on window.ferlabLast (and data-faces on the canvas)
// so end-to-end tests and curious users can check what was drawn.
"use strict";

// Same colours as ferlab.inference.overlay (converted from BGR), so page and CLI agree.
const CLASS_COLORS = {
  angry: "#e62828", disgust: "#3ca03c", fear: "#a03ca0", happy: "#ffc800",
  neutral: "#c8c8c8", sad: "#1e78dc", surprise: "#ff8c00",
};
const FALLBACK_COLORS = ["#00b4e6", "#e9b456", "#739e00", "#42e4f0", "#b27200", "#005ed5", "#a779cc"];
const MAX_CAPTURE_WIDTH = 640; // frames larger than this only cost upload and detection time
const JPEG_QUALITY = 0.8;

const $ = (id) => document.getElementById(id);

// The token `ferlab serve` prints in the page's URL (/#token=...) when it listens beyond
// loopback: the API and the websocket want it. A fragment never reaches the server or its
// logs; the page keeps the token for this tab (a reload still works) and takes it out of the
// address bar, so it is not shown on a shared screen.
const TOKEN = (() => {
  const fromUrl = new URLSearchParams(location.hash.slice(1)).get("token")
    || new URLSearchParams(location.search).get("token");
  if (fromUrl) {
    try { sessionStorage.setItem("ferlab-token", fromUrl); } catch (e) { /* storage off: URL only */ }
    if (location.hash) history.replaceState(null, "", location.pathname + location.search);
    return fromUrl;
  }
  try { return sessionStorage.getItem("ferlab-token"); } catch (e) { return null; }
})();

function apiFetch(url, init = {}) {
  const headers = { ...(init.headers || {}), ...(TOKEN ? { Authorization: `Bearer ${TOKEN}` } : {}) };
  return fetch(url, { ...init, headers });
}
let classes = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"];
let limits = { max_upload_mb: 20, max_video_seconds: 120 };
window.ferlabLast = null;

const UNCERTAIN_COLOR = "#808080";

function colorOf(label) {
  if (CLASS_COLORS[label]) return CLASS_COLORS[label];
  const i = Math.max(0, classes.indexOf(label));
  return FALLBACK_COLORS[i % FALLBACK_COLORS.length];
}

function setStatus(el, text, isError = false) {
  el.textContent = text;
  el.classList.toggle("error", isError);
}

// ---- drawing ---------------------------------------------------------------------------

// Where the distributions go is planned before anything is drawn, as in
// ferlab.inference.overlay: a frame of an audience has many faces close together and no room
// for a full panel beside each, and a panel covering a neighbour's face or panel makes both
// unreadable. So, largest faces first (the ones a viewer looks at), each face keeps its
// distribution in the largest form that fits inside the canvas without overlapping any face
// box, any label or an earlier panel: the full panel, a smaller one with the same seven rows,
// or a one-line stacked strip under (or just inside the bottom of) its box.
const SMALL_SCALE = 0.65; // the second try; as in overlay.py

// Sizes of a distribution panel at `scale` (1 = full, what a single face has always had).
// The small one is the full one shrunk, but never below a 6 px font and never above full.
function panelGeometry(u, scale = 1) {
  const full = { font: Math.round(10.5 * u), row: Math.round(12 * u), nameW: Math.round(62 * u), barW: Math.round(90 * u) };
  let g = full;
  if (scale !== 1) {
    const font = Math.min(full.font, Math.max(6, Math.round(full.font * scale)));
    g = { font,
          row: Math.min(full.row, Math.max(font + 1, Math.round(full.row * scale))),
          nameW: Math.min(full.nameW, Math.max(Math.round(font * 5.9), Math.round(full.nameW * scale))),
          barW: Math.round(full.barW * scale) };
  }
  return { ...g, pad: 4, w: g.nameW + g.barW + 8, h: g.row * classes.length + 6 };
}

function boxLine(u) { return Math.max(2, 3 * u); } // a box outline's width
function stripHeight(u) { return Math.max(4, Math.round(8 * u)); } // thin enough for any face

// Rectangles are [x, y, w, h]; they overlap when they share some area (touching is fine).
function overlaps(a, b) {
  return Math.min(a[0] + a[2], b[0] + b[2]) - Math.max(a[0], b[0]) > 0
      && Math.min(a[1] + a[3], b[1] + b[3]) - Math.max(a[1], b[1]) > 0;
}

function grow(r, m) { return [r[0] - m, r[1] - m, r[2] + 2 * m, r[3] + 2 * m]; }

// Positions from lo to hi, nearest to `anchor` first: how far a panel slides along a side.
function spans(lo, hi, anchor, steps = 6) {
  if (hi < lo) return [];
  const vals = new Set([anchor >= lo && anchor <= hi ? anchor : lo]);
  for (let k = 0; k <= steps; k++) vals.add(Math.round(lo + (hi - lo) * k / steps));
  return [...vals].sort((a, b) => Math.abs(a - anchor) - Math.abs(b - anchor) || a - b);
}

// Rects of size pw x ph beside `box`, best first: right, left, below, above (the box and its
// label span rows top..bottom), aligned with the box's top-left, then slid along that side
// only as far as they still read as this face's (beside it: reaching its middle row; under
// or over it: spanning its whole width). Only those inside the W x H canvas.
function panelCandidates(W, H, box, top, bottom, pw, ph, gap) {
  const [x, y, bw, bh] = box;
  const ys = spans(Math.max(0, Math.min(y, y + bh / 2 - ph)), Math.min(H - ph, y + bh / 2), y);
  const xs = spans(Math.max(0, Math.min(x, x + bw - pw)), Math.min(W - pw, Math.max(x, x + bw - pw)), x);
  const out = [
    ...ys.map((v) => [x + bw + gap, v]), ...ys.map((v) => [x - gap - pw, v]),
    ...xs.map((v) => [v, bottom + gap]), ...xs.map((v) => [v, top - gap - ph]),
  ].map(([cx, cy]) => [cx, cy, pw, ph]);
  return out.filter((r) => r[0] >= 0 && r[1] >= 0 && r[0] + pw <= W && r[1] + ph <= H);
}

// The plan for every face's distribution, one {kind, rect, scale} per box, in the boxes'
// order: kind "full" or "small" (the dark panel of names and bars at `scale`), or "strip".
// boxes and tagRects (face i's label) are canvas pixels; u is the canvas's size unit.
// Pure, so it can be tested without reading pixels.
function layoutPanels(W, H, boxes, tagRects = [], u = 1) {
  const m = Math.ceil(boxLine(u) / 2) + 1; // a box's outline reaches this far out
  const sep = Math.max(1, Math.round(2 * u)); // keeps neighbouring panels from reading as one
  const fixed = [...boxes.map((b) => grow(b, m)), ...tagRects];
  const placed = [];
  const plan = new Array(boxes.length).fill(null);
  const order = boxes.map((_, i) => i).sort((a, b) => boxes[b][2] * boxes[b][3] - boxes[a][2] * boxes[a][3] || a - b);
  for (const i of order) {
    const [x, y, bw, bh] = boxes[i];
    const blocked = [...fixed, ...placed.map((p) => grow(p, sep))];
    const free = (r) => !blocked.some((o) => overlaps(r, o));
    // the label belongs to the box: panels above or below go beyond it
    const t = tagRects[i];
    const top = t && t[1] + t[3] <= y + 1 ? Math.min(y, t[1]) : y;
    const bottom = t && t[1] >= y + bh - 1 ? Math.max(y + bh, t[1] + t[3]) : y + bh;
    for (const [kind, scale] of [["full", 1], ["small", SMALL_SCALE]]) {
      const g = panelGeometry(u, scale);
      const rect = panelCandidates(W, H, boxes[i], top, bottom, g.w, g.h, 6).find(free);
      if (rect) { plan[i] = { kind, rect, scale }; break; }
    }
    if (!plan[i]) {
      // no panel fits: the strip just below the box if that is free, else just inside its
      // bottom edge, which always fits
      const sh = stripHeight(u), lw = boxLine(u);
      let rect = [x, y + bh + m, bw, sh];
      if (!(rect[0] >= 0 && rect[0] + rect[2] <= W && rect[1] + sh <= H && free(rect))) {
        const x0 = Math.max(0, x + lw), x1 = Math.min(W, x + bw - lw), y1 = Math.min(H, y + bh - lw);
        rect = [x0, Math.max(0, y1 - sh), Math.max(0, x1 - x0), Math.max(0, Math.min(sh, y1))];
      }
      plan[i] = { kind: "strip", rect, scale: 1 };
    }
    placed.push(plan[i].rect);
  }
  return plan;
}

// The dark panel: every class name and its bar.
function drawPanel(ctx, dist, panel, u) {
  const g = panelGeometry(u, panel.scale);
  const [px, py, pw, ph] = panel.rect;
  ctx.fillStyle = "rgba(0,0,0,0.55)";
  ctx.fillRect(px, py, pw, ph);
  ctx.font = `${g.font}px system-ui, sans-serif`;
  ctx.textBaseline = "top";
  classes.forEach((name, i) => {
    const p = dist[name] || 0;
    const y = py + 3 + i * g.row;
    ctx.fillStyle = "#ddd";
    ctx.fillText(name, px + g.pad, y);
    ctx.fillStyle = colorOf(name);
    ctx.fillRect(px + g.nameW, y + 1, Math.max(1, p * g.barW), g.row - 3);
  });
}

// The compact form: one row of class-coloured segments, as wide as the probabilities.
function drawStrip(ctx, dist, rect) {
  const [x, y, w, h] = rect;
  const total = classes.reduce((s, c) => s + Math.max(0, dist[c] || 0), 0);
  let at = x;
  classes.forEach((c) => {
    const sw = total > 0 ? w * Math.max(0, dist[c] || 0) / total : w / classes.length;
    ctx.fillStyle = colorOf(c);
    ctx.fillRect(at, y, sw, h);
    at += sw;
  });
}

// Sizes a label is tried at, after the full one: as in overlay.py, but never below 6 px.
const TAG_SHRINK = [0.8, 0.65];

// Area of rect r that the rects in `others` cover (summed, so covering two counts twice).
function coverArea(r, others) {
  let a = 0;
  for (const o of others) {
    const iw = Math.min(r[0] + r[2], o[0] + o[2]) - Math.max(r[0], o[0]);
    const ih = Math.min(r[1] + r[3], o[1] + o[3]) - Math.max(r[1], o[1]);
    if (iw > 0 && ih > 0) a += iw * ih;
  }
  return a;
}

// Where each face's label goes, one {rect, x, y, font} per box in the boxes' order: rect is
// the coloured background, (x, y) where the text starts (textBaseline "top") and font the
// ctx.font to write it in. As in ferlab.inference.overlay.layout_tags: a label goes on the top
// edge of its box, left-aligned (under the box when there is no room above), as it always
// has, so a lone face's label does not move. In a crowd a label is often wider than its face
// and would run over the neighbour's box or label, which makes both unreadable; so, largest
// faces first (the ones a viewer looks at get the first choice), each label takes the first
// of: centred or right-aligned over its box, inside the box at its top edge, the same at 0.8
// and then 0.65 of the font, then under the box, that covers no other face's box and no
// earlier label; failing that, the one clear of other faces covering least of earlier labels;
// failing that (labels wider than a face and its gaps), the one covering least of other faces
// (4x: a hidden face is worse than two labels touching) and labels. Pure but for measuring
// text with ctx (ctx.font is left set to some label font).
function layoutTags(ctx, W, H, boxes, texts, u = 1, font = Math.round(14 * u)) {
  const lw = boxLine(u);
  const m = Math.ceil(lw / 2) + 1; // a box's outline reaches this far out
  const faces = boxes.map((b) => grow(b, m));
  const order = boxes.map((_, i) => i).sort((a, b) => boxes[b][2] * boxes[b][3] - boxes[a][2] * boxes[a][3] || a - b);
  const sizes = [font, ...TAG_SHRINK.map((k) => Math.max(6, Math.round(font * k)))]
    .filter((v, k, all) => all.indexOf(v) === k); // small fonts round to the same size
  const css = (px) => `bold ${px}px system-ui, sans-serif`;
  const tags = new Array(boxes.length).fill(null);
  const placed = [];
  for (const i of order) {
    const [bx, by, bw, bh] = boxes[i];
    const cands = [];
    // rect of a label at font px with its left edge at x and top at y: 4 px of padding around
    // the text, kept inside the canvas sideways (as the video overlay does), so a face at the
    // right edge does not have its label cut off
    const add = (px, tw, x, y) => {
      const w = tw + 8;
      x = Math.min(Math.max(x, 0), Math.max(0, W - w));
      cands.push({ rect: [x, y, w, px + 8], x: x + 4, y: y + 4, font: css(px) });
    };
    const widths = sizes.map((px) => { ctx.font = css(px); return ctx.measureText(texts[i]).width; });
    // today's spot first: left-aligned on the top edge, or under the box at the canvas's top
    const up0 = by - font - 8 >= 0;
    add(font, widths[0], bx - lw / 2, up0 ? by - font - 8 : by + bh);
    // left-aligned (the outline's left edge), centred, right-aligned (the outline's right edge)
    const xs = (w) => [bx - lw / 2, bx + bw / 2 - w / 2, bx + bw + lw / 2 - w];
    sizes.forEach((px, k) => {
      const w = widths[k] + 8;
      if (by - px - 8 >= 0) for (const x of xs(w)) add(px, widths[k], x, by - px - 8);
      for (const x of xs(w)) add(px, widths[k], x, by); // inside the box at its top edge
    });
    sizes.forEach((px, k) => { // under the box: the last resort before covering a neighbour
      if (by + bh + px + 8 <= H) for (const x of xs(widths[k] + 8)) add(px, widths[k], x, by + bh);
    });
    const others = faces.filter((_, j) => j !== i);
    let best = null, bestClear = null, bestAny = null;
    for (const c of cands) {
      const onFace = coverArea(c.rect, others), onTag = coverArea(c.rect, placed);
      if (onFace === 0 && onTag === 0) { best = c; break; }
      if (onFace === 0 && (!bestClear || onTag < bestClear.onTag)) bestClear = { c, onTag };
      const cost = 4 * onFace + onTag;
      if (!bestAny || cost < bestAny.cost) bestAny = { c, cost };
    }
    tags[i] = best || (bestClear ? bestClear.c : bestAny.c);
    placed.push(tags[i].rect);
  }
  return tags;
}

// Draw boxes, track ids, labels and the 7-class distributions of one result onto ctx. Boxes
// are in the pixels of the analysed image; `scale` maps them to the canvas. Returns what was
// drawn, with each face's planned distribution as `panel` and its label's rect as `tag`.
function drawFaces(ctx, faces, scale) {
  const W = ctx.canvas.width, H = ctx.canvas.height;
  const u = Math.max(0.6, Math.min(W, H * 16 / 9) / 960);
  const font = Math.round(14 * u);
  const lw = boxLine(u);
  const items = faces.map((face) => {
    const box = face.box.map((v) => v * scale);
    const uncertain = face.uncertain === true;  // drawn grey, named "uncertain", bars kept
    const pct = Math.round(face.confidence * 100);
    const text = (face.track_id === null || face.track_id === undefined ? "" : `#${face.track_id} `)
      + (uncertain ? `uncertain (${face.label} ${pct}%)` : `${face.label} ${pct}%`);
    return { face, box, text, uncertain, color: uncertain ? UNCERTAIN_COLOR : colorOf(face.label) };
  });
  // labels are placed first (a label reads as its face's only next to it; a panel can go
  // further away), then the panels around the boxes and labels
  const tags = layoutTags(ctx, W, H, items.map((it) => it.box), items.map((it) => it.text), u, font);
  const plan = layoutPanels(W, H, items.map((it) => it.box), tags.map((t) => t.rect), u);

  ctx.lineWidth = lw;
  for (const it of items) { ctx.strokeStyle = it.color; ctx.strokeRect(...it.box); }
  items.forEach((it, i) => {
    const dist = it.face.smoothed || it.face.probs;
    if (plan[i].kind === "strip") drawStrip(ctx, dist, plan[i].rect); else drawPanel(ctx, dist, plan[i], u);
  });
  // labels last, the largest faces' on top
  const bySize = items.map((_, i) => i).sort((a, b) => items[a].box[2] * items[a].box[3] - items[b].box[2] * items[b].box[3] || b - a);
  ctx.textBaseline = "top";
  for (const i of bySize) {
    const { text, color } = items[i];
    const t = tags[i];
    ctx.fillStyle = color;
    ctx.fillRect(...t.rect);
    ctx.fillStyle = "#000";
    ctx.font = t.font; // a crowded label may be written smaller
    ctx.fillText(text, t.x, t.y);
  }
  return items.map((it, i) => ({ box: it.box, label: it.face.label, track_id: it.face.track_id,
                                 confidence: it.face.confidence, uncertain: it.uncertain, color: it.color,
                                 tag: tags[i].rect, panel: plan[i] }));
}

// Overlay canvases are drawn at their on-screen size (times the pixel ratio), not at the
// analysed frame's size, so labels stay sharp when a 320 px frame is shown 960 px wide.
function fitCanvas(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.round(canvas.clientWidth * dpr), h = Math.round(canvas.clientHeight * dpr);
  if (w > 0 && h > 0 && (canvas.width !== w || canvas.height !== h)) { canvas.width = w; canvas.height = h; }
}

// ---- live ------------------------------------------------------------------------------

const live = {
  ws: null, stream: null, running: false, paused: false, inflight: false, sentAt: 0,
  rtts: [], resultTimes: [], lastMsg: null,
  // two buffers: `capture` is sent, `analysed` holds the frame of the last drawn result
  capture: document.createElement("canvas"), analysed: document.createElement("canvas"),
};

async function startLive() {
  const status = $("live-status");
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    setStatus(status, "This browser gives no camera access here (it needs https or localhost).", true);
    return;
  }
  $("live-start").disabled = true;
  setStatus(status, "Asking for the camera…");
  try {
    live.stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false });
  } catch (err) {
    setStatus(status, `No camera: ${err.name}: ${err.message}`, true);
    $("live-start").disabled = false;
    return;
  }
  const video = $("live-video");
  video.srcObject = live.stream;
  await video.play().catch(() => {});
  while (!video.videoWidth) await new Promise((r) => setTimeout(r, 50));
  const s = Math.min(1, MAX_CAPTURE_WIDTH / video.videoWidth);
  live.capture.width = live.analysed.width = Math.round(video.videoWidth * s);
  live.capture.height = live.analysed.height = Math.round(video.videoHeight * s);
  live.running = true;
  live.paused = false;
  live.inflight = false;
  live.rtts = [];
  live.resultTimes = [];
  $("live-stop").disabled = false;
  $("live-pause").disabled = false;

  const query = TOKEN ? `?token=${encodeURIComponent(TOKEN)}` : "";  // browsers cannot set headers on websockets
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/live${query}`);
  live.ws = ws;
  ws.binaryType = "arraybuffer";
  ws.onopen = () => { setStatus(status, "Connected. Analysing frames…"); sendFrame(); };
  ws.onmessage = (ev) => { if (live.ws === ws) onLiveMessage(JSON.parse(ev.data)); };
  ws.onclose = (ev) => {
    if (live.ws !== ws) return;
    const why = ev.reason ? `: ${ev.reason}` : (ev.code === 1000 ? "" : ` (code ${ev.code})`);
    stopLive(`Disconnected${why}`, ev.code !== 1000);
  };
}

function stopLive(message = "Camera off.", isError = false) {
  live.running = false;
  live.paused = false;
  $("live-pause").disabled = true;
  $("live-pause").textContent = "Pause";
  if (live.ws) { const ws = live.ws; live.ws = null; try { ws.close(1000); } catch (e) { /* closed */ } }
  if (live.stream) { live.stream.getTracks().forEach((t) => t.stop()); live.stream = null; }
  $("live-video").srcObject = null;
  $("live-start").disabled = false;
  $("live-stop").disabled = true;
  setStatus($("live-status"), message, isError);
}

// Pause freezes video and overlay together (to read the bars), keeping the camera and
// connection open; a result still in flight when pausing is not drawn.
function togglePause() {
  if (!live.running) return;
  live.paused = !live.paused;
  $("live-pause").textContent = live.paused ? "Resume" : "Pause";
  const video = $("live-video");
  if (live.paused) {
    video.pause();
    // Under load the live video runs ahead of the last result; freeze on the analysed
    // frame itself so the boxes sit exactly on the faces they were computed from.
    if (live.lastMsg) {
      const canvas = $("live-canvas");
      const ctx = canvas.getContext("2d");
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      ctx.drawImage(live.analysed, 0, 0, canvas.width, canvas.height);
      drawFaces(ctx, live.lastMsg.faces, canvas.width / live.lastMsg.width);
    }
    setStatus($("live-status"), "Paused on the last analysed frame.");
  } else {
    video.play().catch(() => {});
    setStatus($("live-status"), "Analysing frames…");
    sendFrame();
  }
}

// One frame in flight: the next is only captured when the previous result is back, so the
// rate follows what the server keeps up with and no queue builds on either side.
function sendFrame() {
  if (!live.running || live.paused || !live.ws || live.ws.readyState !== WebSocket.OPEN || live.inflight) return;
  const video = $("live-video");
  if (video.readyState < 2) { setTimeout(sendFrame, 30); return; }
  live.inflight = true;
  live.capture.getContext("2d").drawImage(video, 0, 0, live.capture.width, live.capture.height);
  live.capture.toBlob((blob) => {
    if (!blob || !live.running || !live.ws || live.ws.readyState !== WebSocket.OPEN) { live.inflight = false; return; }
    live.sentAt = performance.now();
    live.ws.send(blob);
  }, "image/jpeg", JPEG_QUALITY);
}

function onLiveMessage(msg) {
  live.inflight = false;
  if (live.paused) return;
  if (msg.type === "error") {
    setStatus($("live-status"), msg.error, true);
    if (live.running) setTimeout(sendFrame, 200);
    return;
  }
  if (msg.type !== "result") return;
  [live.analysed, live.capture] = [live.capture, live.analysed]; // the frame this result is for
  live.lastMsg = msg;
  const now = performance.now();
  const rtt = now - live.sentAt;
  live.rtts.push(rtt);
  if (live.rtts.length > 30) live.rtts.shift();
  live.resultTimes.push(now);
  while (live.resultTimes.length && now - live.resultTimes[0] > 2000) live.resultTimes.shift();
  const span = (now - live.resultTimes[0]) / 1000;
  const fps = live.resultTimes.length > 1 && span > 0 ? (live.resultTimes.length - 1) / span : 0;

  const canvas = $("live-canvas");
  fitCanvas(canvas);
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const drawn = drawFaces(ctx, msg.faces, canvas.width / msg.width);
  canvas.dataset.faces = String(drawn.length);
  const avg = live.rtts.reduce((a, b) => a + b, 0) / live.rtts.length;
  $("stat-rtt").textContent = avg.toFixed(0);
  $("stat-fps").textContent = fps > 0 ? fps.toFixed(1) : "–";
  $("stat-faces").textContent = String(msg.faces.length);
  $("stat-dropped").textContent = String(msg.dropped);
  const last = { mode: "live", seq: msg.seq, frame: msg.frame, time: msg.time, width: msg.width,
                 height: msg.height, faces: msg.faces, drawn, rttMs: rtt, fps, canvas: "live-canvas" };
  window.ferlabLast = last;
  if (drawn.length) window.ferlabLastWithFaces = last;
  if (live.running) setTimeout(sendFrame, 0);
}

// ---- uploads ---------------------------------------------------------------------------

let downloadUrls = [];

function offerDownload(id, text, type) {
  const a = $(id);
  const url = URL.createObjectURL(new Blob([text], { type }));
  downloadUrls.push(url);
  a.href = url;
  a.hidden = false;
}

function resetUpload() {
  downloadUrls.forEach((u) => URL.revokeObjectURL(u));
  downloadUrls = [];
  ["image-result", "video-result", "json-out", "dl-json", "dl-csv"].forEach((id) => { $(id).hidden = true; });
  const player = $("video-player");
  if (player.src) {
    player.onerror = null;
    URL.revokeObjectURL(player.src);
    player.removeAttribute("src");
    player.load();
  }
}

async function postFile(url, file) {
  const form = new FormData();
  form.append("file", file, file.name);
  const resp = await apiFetch(url, { method: "POST", body: form });
  let body = null;
  try { body = await resp.json(); } catch (e) { /* not JSON */ }
  if (!resp.ok) {
    const detail = body && body.detail ? (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)) : resp.statusText;
    throw new Error(`${resp.status}: ${detail}`);
  }
  return body;
}

function isVideo(file) {
  return file.type.startsWith("video/") || /\.(mp4|m4v|mov|webm|mkv|avi)$/i.test(file.name);
}

async function handleFile(file) {
  const status = $("upload-status");
  resetUpload();
  if (file.size > limits.max_upload_mb * 1024 * 1024) {
    setStatus(status, `${file.name} is ${(file.size / 1048576).toFixed(1)} MB; the limit is ${limits.max_upload_mb} MB.`, true);
    return;
  }
  const video = isVideo(file);
  setStatus(status, video ? `Analysing ${file.name} (up to ${limits.max_video_seconds} s of video)…` : `Analysing ${file.name}…`);
  const t0 = performance.now();
  try {
    const result = await postFile(video ? "/api/video" : "/api/predict", file);
    const secs = ((performance.now() - t0) / 1000).toFixed(1);
    if (video) await showVideo(file, result, secs); else await showImage(file, result, secs);
    const json = JSON.stringify(result, null, 2);
    $("json-out").textContent = json.length > 200000 ? json.slice(0, 200000) + "\n… (download for the rest)" : json;
    $("json-out").hidden = false;
    offerDownload("dl-json", json, "application/json");
  } catch (err) {
    setStatus(status, `Could not analyse ${file.name}: ${err.message}`, true);
  }
}

async function showImage(file, result, secs) {
  const url = URL.createObjectURL(file);
  downloadUrls.push(url);
  const img = new Image();
  await new Promise((resolve, reject) => { img.onload = resolve; img.onerror = () => reject(new Error("the browser cannot display this image")); img.src = url; });
  const canvas = $("image-canvas");
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0);
  const drawn = drawFaces(ctx, result.faces, canvas.width / result.width);
  canvas.dataset.faces = String(drawn.length);
  $("image-result").hidden = false;
  window.ferlabLast = { mode: "image", faces: result.faces, drawn, width: result.width, height: result.height, canvas: "image-canvas" };
  setStatus($("upload-status"), `${result.faces.length} face(s) in ${file.name} (${secs} s).`);
}

function csvOf(result) {
  const head = ["frame", "time", "track_id", "x", "y", "w", "h", "label", "confidence",
    ...classes.map((c) => `p_${c}`), ...classes.map((c) => `s_${c}`), "uncertain", "uncertainty"];
  const rows = [head.join(",")];
  for (const fr of result.frames) {
    for (const f of fr.faces) {
      const sm = f.smoothed || {};
      rows.push([fr.frame, fr.time, f.track_id === null ? "" : f.track_id, ...f.box, f.label, f.confidence,
        ...classes.map((c) => f.probs[c]), ...classes.map((c) => (c in sm ? sm[c] : "")),
        f.uncertain === null || f.uncertain === undefined ? "" : Number(f.uncertain),
        f.uncertainty === null || f.uncertainty === undefined ? "" : f.uncertainty].join(","));
    }
  }
  return rows.join("\n") + "\n";
}

const videoView = { result: null, times: [], track: null };

async function showVideo(file, result, secs) {
  videoView.result = result;
  videoView.times = result.frames.map((f) => f.time);
  const counts = new Map();
  for (const fr of result.frames) for (const f of fr.faces) {
    if (f.track_id !== null) counts.set(f.track_id, (counts.get(f.track_id) || 0) + 1);
  }
  const tracks = [...counts.entries()].sort((a, b) => b[1] - a[1]);
  const sel = $("track-select");
  sel.replaceChildren(...tracks.map(([id, n]) => new Option(`#${id} (${n} frames)`, String(id))));
  videoView.track = tracks.length ? tracks[0][0] : null;

  const player = $("video-player");
  player.parentElement.hidden = false;
  // the server decodes more formats than browsers play (e.g. MPEG-4 part 2): keep the plot,
  // CSV and JSON, and say why there is no preview
  player.onerror = () => {
    player.parentElement.hidden = true;
    setStatus($("upload-status"), `${$("upload-status").textContent} This browser cannot play the video itself, so there is no annotated preview.`);
  };
  player.src = URL.createObjectURL(file);
  $("video-result").hidden = false;
  drawVideoOverlay();
  drawPlot();
  offerDownload("dl-csv", csvOf(result), "text/csv");
  const faces = result.frames.reduce((n, f) => n + f.faces.length, 0);
  const cut = result.stopped ? ` Stopped early (${result.stopped}).` : "";
  setStatus($("upload-status"), `${result.frames.length} frames analysed at ${result.sample_fps} fps, ${faces} face detections, ${tracks.length} track(s) (${secs} s).${cut}`);
}

function recordAt(t) {
  const times = videoView.times;
  let lo = 0, hi = times.length - 1, best = -1;
  while (lo <= hi) { const mid = (lo + hi) >> 1; if (times[mid] <= t + 1e-6) { best = mid; lo = mid + 1; } else hi = mid - 1; }
  if (best < 0) return null;
  const r = videoView.result;
  return t - times[best] <= 1.5 / r.sample_fps ? r.frames[best] : null;
}

function drawVideoOverlay() {
  const r = videoView.result;
  if (!r) return;
  const canvas = $("video-canvas");
  fitCanvas(canvas);
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const rec = recordAt($("video-player").currentTime);
  const drawn = rec ? drawFaces(ctx, rec.faces, canvas.width / r.video.width) : [];
  window.ferlabLast = { mode: "video", frame: rec ? rec.frame : null, faces: rec ? rec.faces : [], drawn, canvas: "video-canvas" };
  drawPlot();
}

function drawPlot() {
  const r = videoView.result;
  const canvas = $("plot");
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, L = 40, R = 110, T = 12, B = 28;
  ctx.clearRect(0, 0, W, H);
  if (!r) return;
  const tMax = Math.max(1e-3, r.frames.length ? r.frames[r.frames.length - 1].time : 1);
  const x = (t) => L + (W - L - R) * (t / tMax);
  const y = (p) => T + (H - T - B) * (1 - p);
  ctx.strokeStyle = "#333"; ctx.fillStyle = "#999"; ctx.lineWidth = 1;
  ctx.font = "11px system-ui, sans-serif"; ctx.textBaseline = "middle";
  for (const p of [0, 0.25, 0.5, 0.75, 1]) {
    ctx.beginPath(); ctx.moveTo(L, y(p)); ctx.lineTo(W - R, y(p)); ctx.stroke();
    ctx.fillText(p.toFixed(2), 4, y(p));
  }
  ctx.textBaseline = "top";
  for (let i = 0; i <= 5; i++) { const t = tMax * i / 5; ctx.fillText(`${t.toFixed(1)} s`, x(t) - 12, H - B + 8); }
  const pts = [];
  for (const fr of r.frames) {
    const f = fr.faces.find((g) => g.track_id === videoView.track);
    if (f) pts.push([fr.time, f.smoothed || f.probs]);
  }
  classes.forEach((c, i) => {
    ctx.strokeStyle = colorOf(c); ctx.lineWidth = 2; ctx.beginPath();
    let prevT = null;
    for (const [t, d] of pts) {
      // a gap where the track was not seen is left open instead of bridged
      if (prevT === null || t - prevT > 2.5 / r.sample_fps) ctx.moveTo(x(t), y(d[c])); else ctx.lineTo(x(t), y(d[c]));
      prevT = t;
    }
    ctx.stroke();
    ctx.fillStyle = colorOf(c); ctx.fillRect(W - R + 10, T + 4 + i * 16, 12, 10);
    ctx.fillStyle = "#ccc"; ctx.fillText(c, W - R + 28, T + 3 + i * 16);
  });
  const now = $("video-player").currentTime;
  if (now > 0) { ctx.strokeStyle = "#fff"; ctx.lineWidth = 1; ctx.beginPath(); ctx.moveTo(x(now), T); ctx.lineTo(x(now), H - B); ctx.stroke(); }
  if (!pts.length) { ctx.fillStyle = "#999"; ctx.fillText("no tracked face in this video", L + 10, T + 10); }
}

// ---- wiring ----------------------------------------------------------------------------

function showTab(name) {
  document.querySelectorAll("button.tab").forEach((b) => b.classList.toggle("active", b.dataset.tab === name));
  $("live").hidden = name !== "live";
  $("upload").hidden = name !== "upload";
}

async function loadInfo() {
  try {
    const get = async (url) => {
      const r = await apiFetch(url);
      if (r.status === 401) throw new Error("this server needs its token: open the URL `ferlab serve` printed");
      return r.json();
    };
    const [model, health] = await Promise.all([get("/api/model"), get("/api/health")]);
    classes = model.classes;
    limits = health.limits;
    const acc = model.accuracy && (model.accuracy.test ?? model.accuracy.val);
    const accText = typeof acc === "number" ? `${(acc * 100).toFixed(1)}% ${model.accuracy.test !== undefined ? "test" : "val"} accuracy` : "no accuracy on record";
    $("model-info").textContent = `model ${model.name || model.file || "?"}${model.arch ? ` (${model.arch})` : ""} · ${accText} · ${model.backend || "?"} · ${model.detector || "?"} detector`;
  } catch (err) {
    $("model-info").textContent = `server unreachable: ${err.message}`;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("button.tab").forEach((b) => b.addEventListener("click", () => showTab(b.dataset.tab)));
  $("live-start").addEventListener("click", startLive);
  $("live-stop").addEventListener("click", () => stopLive());
  $("live-pause").addEventListener("click", togglePause);
  const drop = $("drop");
  $("file-input").addEventListener("change", (e) => { if (e.target.files.length) handleFile(e.target.files[0]); e.target.value = ""; });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault(); drop.classList.remove("over");
    if (e.dataTransfer.files.length) { showTab("upload"); handleFile(e.dataTransfer.files[0]); }
  });
  const player = $("video-player");
  ["timeupdate", "seeked", "loadeddata"].forEach((ev) => player.addEventListener(ev, drawVideoOverlay));
  player.addEventListener("play", function tick() { drawVideoOverlay(); if (!player.paused && !player.ended) requestAnimationFrame(tick); });
  $("track-select").addEventListener("change", (e) => { videoView.track = Number(e.target.value); drawPlot(); });
  loadInfo();
  if (new URLSearchParams(location.search).get("autostart") === "1") startLive();
});
