// The Secretary page: microphone -> speech-to-text -> reply -> text-to-speech -> avatar.
// Every request goes to this page's own server (/api/...), which forwards to the services.
"use strict";

const $ = (id) => document.getElementById(id);

const state = {
  pollMs: 5000,
  portrait: null, // {blob, name} once loaded or uploaded
  history: [], // earlier turns for a chat model, oldest first
  busy: false,
  recorder: null,
  voices: [],
  voicesLoaded: false,
  endOfSpeech: 0.5, // seconds of non-speech that end a Talk recording
  session: newSessionId(), // this page visit: the server keeps the conversation under it
  portraitKey: null, // the server's key for the current portrait, once uploaded
  turn: null, // the reply being streamed: {id, abort, player}
  player: null, // the last reply's player: Stop silences it while it is still heard
};

function newSessionId() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// ---------------------------------------------------------------- requests and messages

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, options = {}) {
  let res;
  try {
    res = await fetch(path, options);
  } catch (err) {
    throw new ApiError(0, `The Secretary server did not answer (${err.message}). Is "secretary serve" still running?`);
  }
  if (!res.ok) {
    let message = `${res.status} ${res.statusText}`;
    try {
      const body = await res.json();
      message = (body && body.error && body.error.message) || message;
    } catch (_) { /* not JSON: keep the status line */ }
    throw new ApiError(res.status, message);
  }
  return res;
}

// Point a media or image element at a new blob, releasing the one it showed before.
function showBlob(element, blob) {
  if (element.src && element.src.startsWith("blob:")) URL.revokeObjectURL(element.src);
  element.src = URL.createObjectURL(blob);
  return element.src;
}

function postJson(path, body) {
  return api(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(body),
  });
}

function notify(text, kind = "error") {
  const box = $("notice");
  box.dataset.kind = kind;
  $("notice-text").textContent = text.charAt(0).toUpperCase() + text.slice(1);
  box.hidden = false;
}

function clearNotice() {
  $("notice").hidden = true;
  $("notice-text").textContent = "";
}

// ---------------------------------------------------------------- service badges

const SERVICE_NAMES = ["stt", "tts", "avatar"];
const serviceState = { stt: "down", tts: "down", avatar: "down" };

function setBadge(name, info) {
  const badge = document.querySelector(`[data-testid="status-${name}"]`);
  const up = info.state === "up";
  badge.dataset.state = up ? "up" : "down";
  badge.title = `${info.url || ""} — ${info.detail || info.state}`;
  const short = up ? "ready" : (/loading|starting/.test(info.detail || "") ? "starting" : "down");
  badge.querySelector(".state").textContent = short;
  const wasUp = serviceState[name] === "up";
  serviceState[name] = up ? "up" : "down";
  if (up && !wasUp) onServiceUp(name);
}

async function refreshStatus() {
  try {
    const body = await (await api("/api/status")).json();
    for (const name of SERVICE_NAMES) {
      if (body.services[name]) setBadge(name, body.services[name]);
    }
    showReplySource(body.reply);
  } catch (err) {
    for (const name of SERVICE_NAMES) setBadge(name, { state: "down", detail: err.message });
  } finally {
    setTimeout(refreshStatus, state.pollMs);
  }
}

function showReplySource(reply) {
  const badge = document.querySelector('[data-testid="status-reply"]');
  const source = reply && reply.source;
  if (source === "skills") {
    // The skills answer first; a chat model, where configured, gets what they do not know.
    state.replySource = reply.model ? `skills + ${reply.model}` : "skills";
    badge.querySelector(".state").textContent = state.replySource;
    badge.title = "The secretary's skills answer (calendar, to-dos, reminders, notes)" +
      (reply.model ? `, and the chat model ${reply.model} the rest` : "");
    return;
  }
  const chat = source === "chat";
  state.replySource = chat ? reply.model : "read back";
  badge.querySelector(".state").textContent = chat ? reply.model : "reads back";
  badge.title = chat ? `Answers come from the chat model ${reply.model}` :
    "No chat model configured (SECRETARY_UI_CHAT_URL): the secretary reads back what it heard";
}

function onServiceUp(name) {
  if (name === "tts" && !state.voicesLoaded) loadVoices();
  if (name === "avatar") loadExpressions();
}

// ---------------------------------------------------------------- microphone

const VAD_WINDOW_SECONDS = 8; // how much of the microphone the server hears (Smart Turn: 8 s)
const VAD_EVERY_MS = 250;

const MIME_TYPES = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/mp4", "audio/webm"];

function microphoneMessage(err) {
  switch (err && err.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "Microphone access was denied. Allow the microphone for this site (the icon in the address bar) and try again.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No microphone was found. Connect one and try again.";
    case "NotReadableError":
      return "The microphone is in use by another application or could not be opened.";
    default:
      return `The microphone could not be started: ${err && err.message ? err.message : err}`;
  }
}

class MicRecorder {
  constructor({ autoStop }) {
    this.autoStop = autoStop;
    this.maxSeconds = 60;
    this.noise = 0.005;
    this.heard = 0; // seconds of speech so far
    this.lastLoud = 0;
    // Talk mode asks the server's voice detector (Silero) whether the speaker has finished;
    // the loudness rule below stays as the fallback.
    this.vad = autoStop;
    this.vadBusy = false;
    this.vadAt = 0;
    this.vadSpeech = false; // the detector has heard speech in this recording
    this.tail = []; // the last samples, in blocks, at the context's rate
    this.tailSamples = 0;
  }

  async startCapture(source) {
    try {
      await this.context.audioWorklet.addModule("/static/capture.js");
      const node = new AudioWorkletNode(this.context, "secretary-capture");
      node.port.onmessage = (e) => this.keep(e.data);
      source.connect(node);
    } catch (_) {
      this.vad = false; // no worklets here: the loudness rule alone
    }
  }

  keep(block) {
    this.tail.push(block);
    this.tailSamples += block.length;
    const wanted = this.context.sampleRate * VAD_WINDOW_SECONDS;
    while (this.tail.length > 1 && this.tailSamples - this.tail[0].length >= wanted) {
      this.tailSamples -= this.tail.shift().length;
    }
  }

  // The last seconds as 16 kHz 16-bit PCM (linear interpolation is plenty for a VAD).
  tailPcm() {
    const all = new Float32Array(this.tailSamples);
    let at = 0;
    for (const block of this.tail) { all.set(block, at); at += block.length; }
    const step = this.context.sampleRate / 16000;
    const out = new Int16Array(Math.floor(all.length / step));
    for (let i = 0; i < out.length; i++) {
      const x = i * step;
      const j = Math.floor(x);
      const v = j + 1 < all.length ? all[j] + (all[j + 1] - all[j]) * (x - j) : all[j];
      out[i] = Math.max(-32768, Math.min(32767, Math.round(v * 32767)));
    }
    return out;
  }

  async checkEndOfSpeech() {
    this.vadBusy = true;
    this.vadAt = performance.now();
    try {
      const res = await fetch("/api/vad", {
        method: "POST", headers: { "Content-Type": "application/octet-stream" }, body: this.tailPcm(),
      });
      if (!res.ok) throw new Error(String(res.status));
      const heard = await res.json();
      if (heard.speech) this.vadSpeech = true;
      // end_after: the silence that ends this utterance (short once it sounds finished).
      const endAfter = typeof heard.end_after === "number" ? heard.end_after : state.endOfSpeech;
      if (this.vadSpeech && heard.trailing_silence >= endAfter && this.media && this.media.state === "recording") {
        this.stop("vad");
      }
    } catch (_) {
      this.vad = false; // the server has no detector: the loudness rule alone
    } finally {
      this.vadBusy = false;
    }
  }

  async start() {
    if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new Error("The microphone needs a secure page: open this UI over https://, or on the machine that runs it at http://localhost (see the README).");
    }
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1 } });
    } catch (err) {
      throw new Error(microphoneMessage(err));
    }
    this.context = new AudioContext();
    const source = this.context.createMediaStreamSource(this.stream);
    this.analyser = this.context.createAnalyser();
    this.analyser.fftSize = 2048;
    source.connect(this.analyser);
    this.samples = new Float32Array(this.analyser.fftSize);
    if (this.vad) await this.startCapture(source);

    const mimeType = MIME_TYPES.find((t) => window.MediaRecorder && MediaRecorder.isTypeSupported(t));
    this.media = new MediaRecorder(this.stream, mimeType ? { mimeType } : undefined);
    const chunks = [];
    this.media.ondataavailable = (e) => { if (e.data && e.data.size) chunks.push(e.data); };
    this.done = new Promise((resolve) => {
      this.media.onstop = () => resolve(new Blob(chunks, { type: this.media.mimeType }));
    });
    delete $("recorder").dataset.stoppedBy;
    this.media.start(250);
    this.started = performance.now();
    this.lastTick = this.started;
    this.timer = setInterval(() => this.tick(), 50);
    $("recorder").dataset.recording = "true";
    $("stop").disabled = false;
    if (this.autoStop) {
      $("full-flow").dataset.listening = "true";
      $("full-flow-label").textContent = "Listening…";
    }
  }

  tick() {
    const now = performance.now();
    const dt = (now - this.lastTick) / 1000;
    this.lastTick = now;
    this.analyser.getFloatTimeDomainData(this.samples);
    let sum = 0;
    for (const x of this.samples) sum += x * x;
    const rms = Math.sqrt(sum / this.samples.length);
    const dbfs = rms > 0 ? 20 * Math.log10(rms) : -100;
    const level = Math.max(0, Math.min(1, (dbfs + 60) / 60));
    const fill = $("meter-fill");
    fill.style.width = `${Math.round(level * 100)}%`;
    fill.dataset.level = level.toFixed(3);

    const elapsed = (now - this.started) / 1000;
    $("timer").textContent = `${Math.floor(elapsed / 60)}:${String(Math.floor(elapsed % 60)).padStart(2, "0")}`;
    // A simple voice detector for the one-click flow: stop after a pause that follows speech.
    const loud = rms > Math.max(0.012, this.noise * 3);
    if (loud) {
      this.heard += dt;
      this.lastLoud = now;
    } else {
      this.noise = this.noise * 0.95 + rms * 0.05;
    }
    const pause = (now - this.lastLoud) / 1000;
    // While the server's detector answers, it decides; the loudness rule waits longer then.
    const quiet = this.vad && this.vadSpeech ? 3.0 : 1.3;
    if (this.autoStop && this.heard > 0.4 && pause > quiet) this.stop("silence");
    else if (this.autoStop && this.heard === 0 && !this.vadSpeech && elapsed > 12) this.stop("silence");
    else if (elapsed > this.maxSeconds) this.stop("limit");
    else if (this.vad && !this.vadBusy && elapsed > 0.3 && now - this.vadAt > VAD_EVERY_MS) this.checkEndOfSpeech();
  }

  stop(reason = "manual") {
    if (!this.stoppedBy) {
      this.stoppedBy = reason;
      $("recorder").dataset.stoppedBy = reason;
    }
    if (!this.stoppedAt) {
      this.stoppedAt = state.stoppedAt = performance.now();
      state.speechEndedAt = this.lastLoud || this.stoppedAt;
    }
    clearInterval(this.timer);
    if (this.media && this.media.state !== "inactive") this.media.stop();
    if (this.stream) this.stream.getTracks().forEach((t) => t.stop());
    if (this.context && this.context.state !== "closed") this.context.close();
    $("recorder").dataset.recording = "false";
    $("full-flow").dataset.listening = "false";
    $("full-flow-label").textContent = "Talk";
    $("meter-fill").style.width = "0%";
    $("meter-fill").dataset.level = "0";
    $("stop").disabled = true;
  }
}

async function recordOnce(options) {
  const recorder = new MicRecorder(options);
  state.recorder = recorder;
  try {
    await recorder.start();
    return await recorder.done;
  } finally {
    recorder.stop();
    state.recorder = null;
  }
}

// ---------------------------------------------------------------- the services

function extensionFor(mimeType) {
  if (mimeType.includes("ogg")) return "ogg";
  if (mimeType.includes("mp4")) return "m4a";
  if (mimeType.includes("wav")) return "wav";
  return "webm";
}

async function transcribe(blob) {
  const form = new FormData();
  form.append("file", blob, `recording.${extensionFor(blob.type)}`);
  return (await api("/api/stt/transcribe", { method: "POST", body: form })).json();
}

async function synthesize({ text, language, voice, speed }) {
  const body = { text, language, format: "wav" };
  if (voice) body.voice = voice;
  if (speed && speed !== 1) body.speed = speed;
  return (await postJson("/api/tts/synthesize", body)).blob();
}

async function portraitBlob() {
  if (!state.portrait) {
    const res = await api("/static/portrait.png");
    state.portrait = { blob: await res.blob(), name: "portrait.png" };
  }
  return state.portrait;
}

// ---------------------------------------------------------------- the conversation

const STEPS = ["listen", "transcribe", "think", "speak", "animate"];

function setStep(step, status) {
  const item = document.querySelector(`#steps li[data-step="${step}"]`);
  if (item) item.dataset.status = status;
}

function resetSteps() {
  for (const step of STEPS) setStep(step, "");
}

function activeStep() {
  const item = document.querySelector('#steps li[data-status="active"]');
  return item ? item.dataset.step : null;
}

function setBusy(busy) {
  state.busy = busy;
  document.body.dataset.busy = String(busy);
}

function showTranscript(result) {
  $("transcript").textContent = (result.text || "").trim();
  $("detected-language").textContent = result.language || "";
  const list = $("segments");
  list.replaceChildren();
  for (const seg of result.segments || []) {
    const li = document.createElement("li");
    const time = document.createElement("time");
    time.textContent = `${seg.start.toFixed(2)}–${seg.end.toFixed(2)} s`;
    li.append(time, (seg.text || "").trim());
    list.append(li);
  }
}

function clearConversation() {
  if (state.turn) state.turn.player.stop();
  $("avatar-canvas").hidden = true;
  $("transcript").textContent = "";
  $("detected-language").textContent = "";
  $("segments").replaceChildren();
  $("reply-text").textContent = "";
  $("reply-source").textContent = "";
  unlinkVideo();
  const audio = $("reply-audio");
  audio.pause();
  audio.removeAttribute("src");
  audio.load();
}

async function fullFlow() {
  if (state.recorder) {
    state.recorder.stop("manual"); // a second click on Talk ends the recording
    return;
  }
  await runFlow(async () => {
    setStep("listen", "active");
    const recording = await recordOnce({ autoStop: true });
    setStep("listen", "done");
    await streamTurn(recording);
  });
}

// The portrait goes to the server once per page visit (and again only if it changes or the
// server forgot it); turns refer to it by key.
async function portraitKey() {
  if (!state.portrait) return "default";
  if (!state.portraitKey) {
    const form = new FormData();
    form.append("image", state.portrait.blob, state.portrait.name);
    state.portraitKey = (await (await api("/api/portrait", { method: "POST", body: form })).json()).portrait;
  }
  return state.portraitKey;
}

async function postTurn(recording, signal) {
  for (let attempt = 0; ; attempt++) {
    const form = new FormData();
    form.append("audio", recording, `recording.${extensionFor(recording.type)}`);
    form.append("session", state.session);
    form.append("portrait", await portraitKey());
    form.append("expression", $("avatar-expression").value);
    form.append("intensity", $("avatar-intensity").value);
    try {
      return await api("/api/turn", { method: "POST", body: form, signal });
    } catch (err) {
      if (err.status === 404 && attempt === 0 && state.portraitKey) { state.portraitKey = null; continue; }
      throw err;
    }
  }
}

// One turn on the server, streamed: transcript, reply text, audio and avatar frames arrive
// as events (one JSON object a line) and are shown and played as they come.
async function streamTurn(recording) {
  const abort = new AbortController();
  const player = new ReplyPlayer();
  const turn = { id: null, abort, player, stopped: false };
  state.turn = turn;
  state.player = player;
  $("stop").disabled = false;
  setStep("transcribe", "active");
  try {
    const res = await postTurn(recording, abort.signal);
    turn.id = res.headers.get("X-Turn-Id");
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let newline;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, newline).trim();
        buffer = buffer.slice(newline + 1);
        if (line) onTurnEvent(JSON.parse(line), player);
      }
    }
    player.finish();
  } catch (err) {
    if (turn.stopped) return; // the listener pressed Stop
    if (err.name === "AbortError") return;
    throw err;
  } finally {
    if (state.turn === turn) state.turn = null;
    // The reply may play on after its stream ended: Stop stays on until it is heard out.
    $("stop").disabled = !player.audible();
    // The turn may have changed the calendar: the Agenda panel (agenda.js) listens.
    document.dispatchEvent(new CustomEvent("secretary:replied"));
  }
}

function onTurnEvent(event, player) {
  switch (event.type) {
    case "transcript":
      showTranscript({ text: event.text, language: event.language, segments: [] });
      setStep("transcribe", "done");
      setStep("think", "active");
      break;
    case "heard_nothing":
      ["think", "speak", "animate"].forEach((s) => setStep(s, "skipped"));
      notify(event.message, "info");
      break;
    case "reply":
      $("reply-text").textContent = event.text;
      $("reply-source").textContent = state.replySource;
      break;
    case "sentence":
      if (event.index === 0) setStep("speak", "active");
      break;
    case "audio":
      setStep("think", "done");
      player.addAudio(event);
      break;
    case "audio_end":
      setStep("speak", "done");
      player.endAudio();
      break;
    case "frame":
      if (!player.frames.length) setStep("animate", "active");
      player.addFrame(event);
      break;
    case "error":
      onTurnError(event);
      break;
    case "done":
      $("reply-source").textContent = state.replySource;
      showTimings(event.timings || {});
      if (event.outcome === "completed") {
        for (const step of ["think", "speak"]) setStep(step, "done");
        const animate = document.querySelector('#steps li[data-step="animate"]');
        if (animate.dataset.status === "active") setStep("animate", "done");
        else if (!animate.dataset.status) setStep("animate", "skipped");
      }
      break;
    default:
      break; // "turn", and kinds a newer server may add
  }
}

const TIMING_NAMES = {
  transcribe: "transcript", brain_first_token: "first word of the reply",
  first_sentence: "first sentence", first_audio: "first audio", first_frame: "first avatar frame",
  total: "whole turn",
};

// The turn's stage times (seconds from the end of the upload) under "Timings".
function showTimings(timings) {
  const list = $("segments");
  list.replaceChildren();
  for (const [key, label] of Object.entries(TIMING_NAMES)) {
    if (timings[key] === undefined) continue;
    const li = document.createElement("li");
    const time = document.createElement("time");
    time.textContent = `${timings[key].toFixed(2)} s`;
    li.append(time, label);
    list.append(li);
  }
}

const STAGE_STEPS = { transcribe: "transcribe", brain: "think", speech: "speak", avatar: "animate" };

function onTurnError(event) {
  const step = STAGE_STEPS[event.stage];
  if (step) setStep(step, "failed");
  if (event.stage === "avatar") {
    notify(`The avatar could not animate the reply: ${event.message}. Playing the voice alone.`);
  } else if (event.stage === "brain") {
    notify(`The chat model could not answer: ${event.message}`);
  } else {
    notify(event.message);
  }
}

// Stop while a reply streams: the server stops working on it, the page stops playing it.
function stopTurn() {
  const turn = state.turn;
  if (!turn) return;
  turn.stopped = true;
  if (turn.id) {
    const played = $("reply-audio").currentTime || 0;
    postJson(`/api/turn/${turn.id}/interrupt`, { played }).catch(() => {});
  }
  turn.abort.abort();
  turn.player.stop();
}

// ---------------------------------------------------------------- playing a streamed reply

// The reply's MP3 pieces go into a MediaSource behind the reply <audio>, which starts
// playing with the first piece; avatar frames are drawn on a canvas at the audio's clock.
class ReplyPlayer {
  constructor() {
    this.audio = $("reply-audio");
    this.canvas = $("avatar-canvas");
    this.frames = []; // {time, bitmap} in time order, not yet shown
    this.queue = []; // audio pieces waiting for the SourceBuffer
    this.pieces = []; // every piece, for the fallback without MediaSource
    this.ended = false;
    this.started = false;
    this.drawn = 0;
    this.canvas.dataset.frames = "0";
    this.streaming = window.MediaSource && MediaSource.isTypeSupported("audio/mpeg");
    unlinkVideo();
    if (this.streaming) {
      this.source = new MediaSource();
      this.opened = new Promise((resolve) => this.source.addEventListener("sourceopen", resolve, { once: true }));
      showBlob(this.audio, this.source);
    }
    this.tick = this.tick.bind(this);
    this.raf = requestAnimationFrame(this.tick);
    // How long the listener waited: from the end of the recording to the first sound.
    delete this.audio.dataset.latency;
    delete this.audio.dataset.afterSpeech;
    this.audio.addEventListener("playing", () => {
      const now = performance.now();
      if (state.stoppedAt) this.audio.dataset.latency = ((now - state.stoppedAt) / 1000).toFixed(3);
      if (state.speechEndedAt) this.audio.dataset.afterSpeech = ((now - state.speechEndedAt) / 1000).toFixed(3);
    }, { once: true });
  }

  async addAudio(event) {
    const bytes = Uint8Array.from(atob(event.data), (c) => c.charCodeAt(0));
    this.pieces.push(bytes);
    if (!this.streaming) return;
    await this.opened;
    if (!this.buffer) {
      this.buffer = this.source.addSourceBuffer("audio/mpeg");
      this.buffer.mode = "sequence";
      this.buffer.addEventListener("updateend", () => this.pump());
    }
    this.queue.push(bytes);
    this.pump();
    if (!this.started) {
      this.started = true;
      this.audio.currentTime = 0;
      this.audio.play().catch((err) => {
        if (err.name === "NotAllowedError") notify("The browser blocked autoplay: press play to hear the reply.", "info");
      });
    }
  }

  pump() {
    if (!this.buffer || this.buffer.updating) return;
    if (this.queue.length) {
      this.buffer.appendBuffer(this.queue.shift());
    } else if (this.ended && this.source.readyState === "open") {
      this.source.endOfStream();
    }
  }

  endAudio() {
    this.ended = true;
    if (this.streaming) {
      this.pump();
    } else if (this.pieces.length) {
      showBlob(this.audio, new Blob(this.pieces, { type: "audio/mpeg" }));
      this.audio.play().catch(() => {});
    }
  }

  finish() {
    if (!this.ended) this.endAudio();
  }

  addFrame(event) {
    const bytes = Uint8Array.from(atob(event.data), (c) => c.charCodeAt(0));
    const decoding = createImageBitmap(new Blob([bytes], { type: "image/jpeg" }));
    this.framesDecoded = (this.framesDecoded || Promise.resolve()).then(async () => {
      const bitmap = await decoding; // decoded in parallel, kept in order
      if (this.stopped) { bitmap.close(); return; }
      this.frames.push({ time: event.time, bitmap });
      if (this.drawn === 0) this.draw(this.frames[0]);
    }).catch(() => {});
  }

  draw(frame) {
    const canvas = this.canvas;
    if (canvas.width !== frame.bitmap.width) canvas.width = frame.bitmap.width;
    if (canvas.height !== frame.bitmap.height) canvas.height = frame.bitmap.height;
    canvas.getContext("2d").drawImage(frame.bitmap, 0, 0);
    this.drawn += 1;
    canvas.dataset.frames = String(this.drawn);
    canvas.dataset.time = frame.time.toFixed(3);
    if (canvas.hidden) {
      canvas.hidden = false;
      $("portrait").hidden = true;
      $("avatar-image").hidden = true;
    }
  }

  // Show the latest frame due at the audio's current time; drop the ones it passed.
  tick() {
    const now = this.audio.currentTime;
    let due = null;
    while (this.frames.length && this.frames[0].time <= now + 0.02) {
      if (due) due.bitmap.close();
      due = this.frames.shift();
    }
    if (due) {
      this.draw(due);
      due.bitmap.close();
    }
    if (!this.stopped) this.raf = requestAnimationFrame(this.tick);
  }

  audible() {
    return !this.stopped && this.started && !this.audio.paused && !this.audio.ended;
  }

  stop() {
    this.stopped = true;
    cancelAnimationFrame(this.raf);
    this.audio.pause();
    for (const frame of this.frames) frame.bitmap.close();
    this.frames = [];
  }
}

async function transcribeOnly() {
  await runFlow(async () => {
    await listenAndTranscribe({ autoStop: false });
    if (!$("transcript").textContent) notify("No words were recognised in that recording.", "info");
  });
}

// One recording flow at a time: a clean page before, the failing step marked after.
async function runFlow(steps) {
  if (state.busy) return;
  setBusy(true);
  clearNotice();
  clearConversation();
  resetSteps();
  try {
    await steps();
  } catch (err) {
    const step = activeStep();
    if (step) setStep(step, "failed");
    notify(err.message);
  } finally {
    setBusy(false);
  }
}

async function listenAndTranscribe({ autoStop }) {
  setStep("listen", "active");
  const recording = await recordOnce({ autoStop });
  setStep("listen", "done");
  setStep("transcribe", "active");
  const heard = await transcribe(recording);
  showTranscript(heard);
  setStep("transcribe", "done");
  return heard;
}

// ---------------------------------------------------------------- playing the reply in sync

function showStageStatus(text) {
  const box = $("stage-status");
  box.textContent = text;
  box.hidden = !text;
}

function unlinkVideo() {
  $("avatar-canvas").hidden = true;
  const video = $("avatar-video");
  video.pause();
  video.hidden = true;
  $("portrait").hidden = false;
}

// ---------------------------------------------------------------- text to speech

const LANGUAGE_NAMES = {
  en: "English", de: "German", fr: "French", es: "Spanish", it: "Italian", pt: "Portuguese",
  pl: "Polish", nl: "Dutch", cs: "Czech", ar: "Arabic", tr: "Turkish", ru: "Russian",
  hu: "Hungarian", ko: "Korean", ja: "Japanese", "zh-cn": "Chinese", hi: "Hindi",
};

function asList(body, ...keys) {
  if (Array.isArray(body)) return body;
  for (const key of keys) if (body && Array.isArray(body[key])) return body[key];
  if (body && typeof body === "object") {
    return Object.entries(body).map(([name, value]) => ({ name, ...(typeof value === "object" ? value : {}) }));
  }
  return [];
}

function voiceId(voice) {
  return voice.id || voice.name || voice.voice;
}

function voiceLanguages(voice) {
  const langs = voice.languages || (voice.language ? [voice.language] : []);
  return langs.map((l) => String(l));
}

async function loadVoices() {
  try {
    const body = await (await api("/api/tts/voices")).json();
    state.voices = asList(body, "voices", "data").filter(voiceId);
    state.voicesLoaded = true;
  } catch (_) {
    return; // the badge already says why
  }
  const languages = new Set(["en", "de"]);
  for (const voice of state.voices) {
    for (const lang of voiceLanguages(voice)) if (lang !== "*" && lang.length <= 5) languages.add(lang);
  }
  const select = $("tts-language");
  const current = select.value;
  select.replaceChildren();
  for (const lang of [...languages].sort()) {
    const name = LANGUAGE_NAMES[lang] || lang;
    select.append(new Option(`${name} (${lang})`, lang));
  }
  select.value = languages.has(current) ? current : "en";
  fillVoices();
}

function fillVoices() {
  const lang = $("tts-language").value;
  const select = $("tts-voice");
  select.replaceChildren(new Option("default for the language", ""));
  for (const voice of state.voices) {
    const langs = voiceLanguages(voice);
    if (langs.length && !langs.includes(lang) && !langs.includes("*")) continue;
    const label = voice.engine ? `${voiceId(voice)} (${voice.engine})` : voiceId(voice);
    select.append(new Option(label, voiceId(voice)));
  }
}

async function speakText() {
  const text = $("tts-text").value.trim();
  if (!text) {
    notify("Type some text to speak first.", "info");
    return;
  }
  const button = $("tts-speak");
  button.disabled = true;
  clearNotice();
  try {
    const speech = await synthesize({
      text,
      language: $("tts-language").value,
      voice: $("tts-voice").value,
      speed: Number($("tts-speed").value),
    });
    const audio = $("tts-audio");
    const link = $("tts-download");
    link.href = showBlob(audio, speech);
    link.hidden = false;
    try {
      await audio.play();
    } catch (err) {
      if (err.name !== "NotAllowedError") throw err;
    }
  } catch (err) {
    notify(err.message);
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------- avatar

async function loadExpressions() {
  let names;
  try {
    const body = await (await api("/api/avatar/expressions")).json();
    names = asList(body, "expressions", "data").map((e) => (typeof e === "string" ? e : e.name)).filter(Boolean);
  } catch (_) {
    return;
  }
  if (!names.length) return;
  const select = $("avatar-expression");
  const current = select.value;
  select.replaceChildren(...names.map((n) => new Option(n, n)));
  select.value = names.includes(current) ? current : names[0];
}

async function renderExpression() {
  const button = $("avatar-render");
  button.disabled = true;
  clearNotice();
  try {
    const portrait = await portraitBlob();
    const form = new FormData();
    form.append("source_image", portrait.blob, portrait.name);
    form.append("expression", $("avatar-expression").value);
    form.append("intensity", $("avatar-intensity").value);
    form.append("format", "png");
    const image = await (await api("/api/avatar/api/render", { method: "POST", body: form })).blob();
    unlinkVideo();
    const img = $("avatar-image");
    showBlob(img, image);
    img.hidden = false;
    $("portrait").hidden = true;
  } catch (err) {
    notify(err.message);
  } finally {
    button.disabled = false;
  }
}

function usePortrait(file) {
  if (!file) return;
  if (!file.type.startsWith("image/")) {
    notify(`${file.name} is not an image. Choose a photo of a face (JPEG or PNG).`);
    return;
  }
  state.portrait = { blob: file, name: file.name };
  state.portraitKey = null;
  unlinkVideo();
  $("avatar-image").hidden = true;
  showBlob($("portrait"), file);
  $("portrait").hidden = false;
}

function useDefaultPortrait() {
  state.portrait = null;
  state.portraitKey = null;
  unlinkVideo();
  $("avatar-image").hidden = true;
  $("portrait").src = "/static/portrait.png";
  $("portrait-file").value = "";
}

// ---------------------------------------------------------------- start

async function init() {
  try {
    const config = await (await api("/api/config")).json();
    state.pollMs = Math.max(500, config.poll_seconds * 1000);
    if (config.turn) state.endOfSpeech = config.turn.end_of_speech_seconds;
    showReplySource(config.reply);
  } catch (err) {
    notify(err.message);
  }
  $("full-flow").addEventListener("click", fullFlow);
  $("record").addEventListener("click", transcribeOnly);
  $("stop").addEventListener("click", () => {
    if (state.recorder) state.recorder.stop("manual");
    else if (state.turn) stopTurn();
    else if (state.player) {
      state.player.stop();
      $("stop").disabled = true;
    }
  });
  // A reply heard out (or paused with its controls) after its stream ended: Stop goes off.
  for (const name of ["ended", "pause"]) {
    $("reply-audio").addEventListener(name, () => {
      if (!state.turn && !state.recorder) $("stop").disabled = true;
    });
  }
  $("tts-speak").addEventListener("click", speakText);
  $("tts-language").addEventListener("change", fillVoices);
  $("tts-speed").addEventListener("input", (e) => { $("tts-speed-value").textContent = `${Number(e.target.value).toFixed(1)}×`; });
  $("avatar-intensity").addEventListener("input", (e) => { $("avatar-intensity-value").textContent = Number(e.target.value).toFixed(1); });
  $("avatar-render").addEventListener("click", renderExpression);
  $("portrait-file").addEventListener("change", (e) => usePortrait(e.target.files[0]));
  $("portrait-reset").addEventListener("click", useDefaultPortrait);
  $("notice-close").addEventListener("click", clearNotice);
  setBusy(false);
  refreshStatus();
}

document.addEventListener("DOMContentLoaded", init);
