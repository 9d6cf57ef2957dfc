// Live mode: one WebRTC session with the realtime service (the OpenAI Realtime API).
// The SDP offer goes to this page's own server (/api/realtime/calls), which forwards it;
// then the microphone, the reply's voice and the secretary's face flow as media tracks,
// and the events (transcripts, the reply's text) on the data channel "oai-events". Where the
// media cannot reach the realtime service directly, the TURN server of /api/config relays it.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const live = { pc: null, mic: null, channel: null, meter: null, reply: null, you: null };

  function setState(name) {
    $("live-state").textContent = name;
    $("live-state").dataset.state = name;
  }

  function addLine(kind, text) {
    const li = document.createElement("li");
    li.className = kind;
    li.textContent = text;
    $("live-log").appendChild(li);
    li.scrollIntoView({ block: "nearest" });
    return li;
  }

  function showError(message) {
    const notice = $("notice");
    if (notice) {
      $("notice-text").textContent = message;
      notice.dataset.kind = "error";
      notice.hidden = false;
    }
  }

  function onEvent(event) {
    switch (event.type) {
      case "input_audio_buffer.speech_started":
        setState("hearing you");
        live.you = null;
        $("live-partial").textContent = "";
        break;
      case "input_audio_buffer.speech_stopped":
        setState("thinking");
        break;
      case "conversation.item.input_audio_transcription.delta":
        $("live-partial").textContent += event.delta;
        break;
      case "conversation.item.input_audio_transcription.completed":
        $("live-partial").textContent = "";
        if (event.transcript) addLine("you", event.transcript);
        break;
      case "response.created":
        live.reply = null;
        break;
      case "response.output_audio_transcript.delta":
      case "response.output_text.delta":
        if (!live.reply) live.reply = addLine("secretary", "");
        live.reply.textContent += event.delta;
        setState("speaking");
        break;
      case "response.done":
        if (live.reply) {
          live.reply.dataset.status = event.response.status;
          const kept = (event.response.output || [])[0];
          const part = kept && kept.content && kept.content[0];
          if (part && typeof part.transcript === "string" && part.transcript) {
            live.reply.textContent = part.transcript; // what was actually heard
          }
        }
        live.reply = null;
        setState("listening");
        break;
      case "error":
        showError(`Live: ${event.error.message}`);
        break;
      default:
        break;
    }
  }

  function startMeter(stream) {
    const context = new AudioContext();
    const analyser = context.createAnalyser();
    analyser.fftSize = 512;
    context.createMediaStreamSource(stream).connect(analyser);
    const data = new Float32Array(analyser.fftSize);
    const fill = $("live-level");
    const tick = () => {
      if (!live.meter) return;
      analyser.getFloatTimeDomainData(data);
      let sum = 0;
      for (const v of data) sum += v * v;
      const db = 20 * Math.log10(Math.sqrt(sum / data.length) + 1e-9);
      const level = Math.max(0, Math.min(1, (db + 60) / 50));
      fill.style.width = `${Math.round(level * 100)}%`;
      fill.dataset.level = level.toFixed(2);
      requestAnimationFrame(tick);
    };
    live.meter = context;
    requestAnimationFrame(tick);
  }

  function iceGathered(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (pc.iceGatheringState === "complete") {
          pc.removeEventListener("icegatheringstatechange", check);
          resolve();
        }
      };
      pc.addEventListener("icegatheringstatechange", check);
      setTimeout(resolve, 3000); // host candidates are enough on a LAN
    });
  }

  // The STUN and TURN servers (SECRETARY_REALTIME_ICE_SERVERS), asked for at each start so
  // changed credentials are picked up; /api/config is behind the API key, as Live mode is.
  async function iceServers() {
    const res = await fetch("/api/config");
    if (!res.ok) throw new Error(`the page's configuration: ${res.status} ${res.statusText}`);
    return (await res.json()).ice_servers || [];
  }

  async function start() {
    $("live-start").disabled = true;
    setState("connecting");
    try {
      live.mic = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
      const pc = new RTCPeerConnection({ iceServers: await iceServers() });
      live.pc = pc;
      for (const track of live.mic.getTracks()) pc.addTrack(track, live.mic);
      pc.addTransceiver("video", { direction: "recvonly" });
      pc.addEventListener("track", (e) => {
        const stream = e.streams[0] || new MediaStream([e.track]);
        if (e.track.kind === "video") $("live-video").srcObject = stream;
        else $("live-audio").srcObject = stream;
      });
      const channel = pc.createDataChannel("oai-events");
      live.channel = channel;
      channel.addEventListener("message", (e) => onEvent(JSON.parse(e.data)));
      pc.addEventListener("connectionstatechange", () => {
        if (pc.connectionState === "failed") { showError("Live: the connection failed"); hangUp(); }
      });
      await pc.setLocalDescription(await pc.createOffer());
      await iceGathered(pc);
      const res = await fetch("/api/realtime/calls", {
        method: "POST", headers: { "Content-Type": "application/sdp" }, body: pc.localDescription.sdp,
      });
      if (!res.ok) {
        let message = `${res.status} ${res.statusText}`;
        try { message = (await res.json()).error.message || message; } catch (_) { /* keep */ }
        throw new Error(message);
      }
      await pc.setRemoteDescription({ type: "answer", sdp: await res.text() });
      startMeter(live.mic);
      $("live-hangup").disabled = false;
      setState("listening");
    } catch (err) {
      showError(`Live could not start: ${err.message}`);
      hangUp();
    }
  }

  function hangUp() {
    if (live.pc) live.pc.close();
    if (live.mic) for (const track of live.mic.getTracks()) track.stop();
    if (live.meter) live.meter.close();
    Object.assign(live, { pc: null, mic: null, channel: null, meter: null, reply: null });
    $("live-video").srcObject = null;
    $("live-audio").srcObject = null;
    $("live-level").style.width = "0%";
    $("live-start").disabled = false;
    $("live-hangup").disabled = true;
    setState("off");
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("live-start").addEventListener("click", start);
    $("live-hangup").addEventListener("click", hangUp);
  });
})();
