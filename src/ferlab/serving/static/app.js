// ferlab serve page: live webcam over a websocket, and photo/video uploads.
// Plain JS, no build step and nothing from a CDN: the page must work offline.
// The last drawn results (and the layout the server sent for them) are exposed on
// window.ferlabLast (and data-faces on the canvas) so end-to-end tests and curious users can
// check what was drawn.
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

// Where each face's label and distribution go is the server's plan, sent with every result as
// `layout` (ferlab.inference.overlay.layout_json, the plan every annotated video frame and
// photo is drawn by): in a crowd each face keeps its label and its distribution, in the
// largest form that fits (full panel, small panel, or a thin strip), without covering another
// face, label or distribution. The page draws that plan as it is sent; rectangles are [x, y,
// w, h] in the analysed image's pixels.

function boxLine(u) { return Math.max(2, 3 * u); } // a box outline's width
function scaled(rect, scale) { return rect.map((v) => v * scale); }
const LABEL_FONT = (px) => `bold ${px}px system-ui, sans-serif`;

// The dark panel: every class name and its bar, sized to the planned rect.
function drawPanel(ctx, dist, rect) {
  const [px, py, pw, ph] = rect;
  const pad = Math.max(1, Math.round(Math.min(pw, ph) * 0.04));
  const row = (ph - 2 * pad) / classes.length;
  ctx.fillStyle = "rgba(0,0,0,0.55)";
  ctx.fillRect(px, py, pw, ph);
  ctx.font = `${Math.max(5, Math.floor(row * 0.8))}px system-ui, sans-serif`;
  ctx.textBaseline = "middle";
  const nameW = Math.min(pw * 0.55, Math.max(...classes.map((c) => ctx.measureText(c).width)));
  const barX = px + 2 * pad + nameW;
  const barW = Math.max(1, px + pw - pad - barX);
  classes.forEach((name, i) => {
    const p = dist[name] || 0;
    const y = py + pad + i * row;
    ctx.fillStyle = "#ddd";
    ctx.fillText(name, px + pad, y + row / 2, nameW);
    ctx.fillStyle = colorOf(name);
    ctx.fillRect(barX, y + row * 0.2, Math.max(1, p * barW), row * 0.6);
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

// A label on its planned background: the text as large as the rect's height allows, and
// narrower if the browser's font runs wider than the server measured.
function drawLabel(ctx, text, rect, color) {
  const [x, y, w, h] = rect;
  ctx.fillStyle = color;
  ctx.fillRect(x, y, w, h);
  let px = Math.max(6, Math.floor(h * 0.72));
  ctx.font = LABEL_FONT(px);
  const tw = ctx.measureText(text).width;
  if (tw > w - 4) { px = Math.max(6, Math.floor(px * (w - 4) / tw)); ctx.font = LABEL_FONT(px); }
  ctx.fillStyle = "#000";
  ctx.textBaseline = "middle";
  ctx.fillText(text, x + 2, y + h / 2, w - 4);
}

// Draw boxes, labels and the 7-class distributions of one result onto ctx as `layout` plans
// them (a result without one gets its boxes only). `scale` maps the analysed image's pixels
// to the canvas. Returns what was drawn, with each face's label rect as `tag` and its
// distribution as `panel`.
function drawFaces(ctx, faces, layout, scale) {
  const W = ctx.canvas.width, H = ctx.canvas.height;
  const u = Math.max(0.6, Math.min(W, H * 16 / 9) / 960);
  const plan = layout || { tags: [], panels: [] };
  const items = faces.map((face, i) => {
    const uncertain = face.uncertain === true;  // drawn grey, named "uncertain", bars kept
    const tag = plan.tags[i], panel = plan.panels[i];
    return { face, uncertain, box: scaled(face.box, scale), color: uncertain ? UNCERTAIN_COLOR : colorOf(face.label),
             text: tag ? tag.text : "", tag: tag ? scaled(tag.rect, scale) : null,
             panel: panel ? { kind: panel.kind, rect: scaled(panel.rect, scale), scale: panel.scale } : null };
  });
  ctx.lineWidth = boxLine(u);
  for (const it of items) { ctx.strokeStyle = it.color; ctx.strokeRect(...it.box); }
  for (const it of items) {
    if (!it.panel) continue;
    const dist = it.face.smoothed || it.face.probs;
    if (it.panel.kind === "strip") drawStrip(ctx, dist, it.panel.rect); else drawPanel(ctx, dist, it.panel.rect);
  }
  // labels last, the largest faces' on top
  const bySize = items.map((_, i) => i).sort((a, b) => items[a].box[2] * items[a].box[3] - items[b].box[2] * items[b].box[3] || b - a);
  for (const i of bySize) if (items[i].tag) drawLabel(ctx, items[i].text, items[i].tag, items[i].color);
  return items.map((it) => ({ box: it.box, label: it.face.label, track_id: it.face.track_id,
                              confidence: it.face.confidence, uncertain: it.uncertain, color: it.color,
                              text: it.text, tag: it.tag, panel: it.panel }));
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
      drawFaces(ctx, live.lastMsg.faces, live.lastMsg.layout, canvas.width / live.lastMsg.width);
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
  const drawn = drawFaces(ctx, msg.faces, msg.layout, canvas.width / msg.width);
  canvas.dataset.faces = String(drawn.length);
  const avg = live.rtts.reduce((a, b) => a + b, 0) / live.rtts.length;
  $("stat-rtt").textContent = avg.toFixed(0);
  $("stat-fps").textContent = fps > 0 ? fps.toFixed(1) : "–";
  $("stat-faces").textContent = String(msg.faces.length);
  $("stat-dropped").textContent = String(msg.dropped);
  const last = { mode: "live", seq: msg.seq, frame: msg.frame, time: msg.time, width: msg.width,
                 height: msg.height, faces: msg.faces, layout: msg.layout, drawn, rttMs: rtt, fps, canvas: "live-canvas" };
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
  const drawn = drawFaces(ctx, result.faces, result.layout, canvas.width / result.width);
  canvas.dataset.faces = String(drawn.length);
  $("image-result").hidden = false;
  window.ferlabLast = { mode: "image", faces: result.faces, layout: result.layout, drawn, width: result.width,
                        height: result.height, canvas: "image-canvas" };
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
  const drawn = rec ? drawFaces(ctx, rec.faces, rec.layout, canvas.width / r.video.width) : [];
  window.ferlabLast = { mode: "video", frame: rec ? rec.frame : null, faces: rec ? rec.faces : [],
                        layout: rec ? rec.layout : null, drawn, canvas: "video-canvas" };
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
