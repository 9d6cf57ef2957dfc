// The secretary's skills on the page: requests typed to it (/api/reply), the Agenda panel
// (/api/agenda: today, tomorrow, to-dos, reminders) and reminders as they fall due
// (/api/reminders/stream, server-sent events), shown and spoken.
// Loaded after app.js, whose helpers it uses: api, postJson, notify, runFlow, setStep,
// showTranscript, showBlob, synthesize and its state.
"use strict";

(() => {
  const byId = (id) => document.getElementById(id);
  const REFRESH_MS = 60000; // the agenda is read again this often
  const HISTORY_ENTRIES = 16; // typed turns (user and secretary) sent with a request

  const skills = {
    on: false, // the skills answer here: known once /api/agenda answered (404: they are off)
    live: false, // Live mode is on: its realtime session says the reminders itself
    stream: null, // the EventSource of due reminders
    loading: null, // the agenda read under way
    again: false, // another read was asked for while one ran
    seen: new Set(), // reminders already shown (uid and due)
  };

  // ---------------------------------------------------------------- speaking

  // Where a text is spoken: the Text to speech card's voice and speed where the language
  // is the card's, else the language's default voice.
  function voiceFor(language) {
    const chosen = byId("tts-language").value;
    const same = !language || language === chosen;
    return {
      language: language || chosen,
      voice: same ? byId("tts-voice").value : "",
      speed: Number(byId("tts-speed").value),
    };
  }

  async function play(audio) {
    try {
      await audio.play();
      return "playing";
    } catch (err) {
      if (err.name === "NotAllowedError") return "blocked";
      throw err;
    }
  }

  // ---------------------------------------------------------------- the typed box

  async function ask(event) {
    event.preventDefault();
    const input = byId("ask-text");
    const text = input.value.trim();
    if (!text) {
      notify("Type something for the secretary first.", "info");
      return;
    }
    let replied = false;
    await runFlow(async () => {
      showTranscript({ text, language: "", segments: [] });
      setStep("think", "active");
      const body = await (await postJson("/api/reply", {
        text, language: null, history: state.history.slice(-HISTORY_ENTRIES),
      })).json();
      replied = true;
      input.value = "";
      byId("reply-text").textContent = body.text;
      byId("reply-source").textContent = state.replySource || "";
      state.history.push({ role: "user", content: text }, { role: "assistant", content: body.text });
      state.history.splice(0, Math.max(0, state.history.length - HISTORY_ENTRIES));
      setStep("think", "done");
      setStep("speak", "active");
      const speech = await synthesize({ text: body.text, ...voiceFor(body.language) });
      const audio = byId("reply-audio");
      showBlob(audio, speech);
      audio.currentTime = 0;
      if (await play(audio) === "blocked") {
        notify("The browser blocked autoplay: press play to hear the reply.", "info");
      }
      setStep("speak", "done");
    });
    if (replied) refreshAgenda();
    input.focus();
  }

  // ---------------------------------------------------------------- the Agenda panel

  function dayKey(date) {
    const pad = (n) => String(n).padStart(2, "0");
    return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
  }

  function addDays(date, days) {
    const next = new Date(date);
    next.setDate(next.getDate() + days);
    return next;
  }

  // An all-day item's day as the calendar wrote it (no shift into the browser's zone).
  function dateOnly(iso) {
    const [y, m, d] = iso.slice(0, 10).split("-").map(Number);
    return new Date(y, m - 1, d);
  }

  function clock(date) {
    return date.toLocaleTimeString([], { hour: "numeric", minute: "2-digit" });
  }

  function dayLabel(date) {
    const today = new Date();
    if (dayKey(date) === dayKey(today)) return "Today";
    if (dayKey(date) === dayKey(addDays(today, 1))) return "Tomorrow";
    return date.toLocaleDateString([], { weekday: "long", month: "short", day: "numeric" });
  }

  // "14:00" today, "Tomorrow 9:00", "Mon, Jun 2 9:00" further off.
  function when(date) {
    const today = new Date();
    if (dayKey(date) === dayKey(today)) return clock(date);
    if (dayKey(date) === dayKey(addDays(today, 1))) return `Tomorrow ${clock(date)}`;
    const day = date.toLocaleDateString([], { weekday: "short", month: "short", day: "numeric" });
    return `${day} ${clock(date)}`;
  }

  function item(testid, title, time, timeClass) {
    const li = document.createElement("li");
    li.dataset.testid = testid;
    const stamp = document.createElement("time");
    stamp.className = timeClass || "";
    if (time instanceof Date) {
      stamp.dateTime = time.toISOString();
      stamp.textContent = when(time);
    } else {
      stamp.textContent = time || "";
    }
    const name = document.createElement("span");
    name.className = "title";
    name.textContent = title;
    li.append(stamp, name);
    return li;
  }

  function empty(text) {
    const li = document.createElement("li");
    li.className = "empty";
    li.textContent = text;
    return li;
  }

  function list(element, items, emptyText) {
    element.replaceChildren(...(items.length ? items : [empty(emptyText)]));
  }

  // Each event under the day it starts (one running since before today under today);
  // today and tomorrow always, other days (the calendar's zone is not the browser's) when
  // something falls on them.
  function renderEvents(events) {
    const today = new Date();
    today.setHours(0, 0, 0, 0);
    const days = new Map([[dayKey(today), []], [dayKey(addDays(today, 1)), []]]);
    const dates = new Map([[dayKey(today), today], [dayKey(addDays(today, 1)), addDays(today, 1)]]);
    const sorted = [...events].sort((a, b) => (a.all_day === b.all_day ?
      new Date(a.start) - new Date(b.start) : (a.all_day ? -1 : 1)));
    for (const event of sorted) {
      const start = event.all_day ? dateOnly(event.start) : new Date(event.start);
      const day = new Date(Math.max(start, today));
      day.setHours(0, 0, 0, 0);
      const key = dayKey(day);
      if (!days.has(key)) { days.set(key, []); dates.set(key, day); }
      const li = event.all_day ?
        item("agenda-event", event.title, "all day", "all-day") :
        item("agenda-event", event.title, clock(start));
      if (!event.all_day) li.querySelector("time").dateTime = start.toISOString();
      li.title = event.all_day ? event.title : `${event.title}, ${clock(start)}–${clock(new Date(event.end))}`;
      days.get(key).push(li);
    }
    const container = byId("agenda-days");
    container.replaceChildren();
    for (const key of [...days.keys()].sort()) {
      const section = document.createElement("div");
      section.className = "agenda-day";
      section.dataset.day = key;
      const head = document.createElement("h3");
      head.textContent = dayLabel(dates.get(key));
      const ul = document.createElement("ul");
      ul.className = "agenda-list";
      list(ul, days.get(key), "Nothing planned");
      section.append(head, ul);
      container.append(section);
    }
  }

  function render(body) {
    renderEvents(body.events || []);
    const now = new Date();
    list(byId("agenda-todos"), (body.todos || []).map((todo) => {
      const due = todo.due ? new Date(todo.due) : null;
      const li = item("agenda-todo", todo.title, due, due && due < now ? "overdue" : "");
      if (due && due < now) li.dataset.overdue = "true";
      return li;
    }), "No open to-dos");
    list(byId("agenda-reminders"), (body.reminders || []).map((reminder) =>
      item("agenda-reminder", reminder.title, new Date(reminder.due))), "No reminders coming up");
    showAgendaError(body.error ? `The calendar could not be read: ${body.error}` : "");
    const zone = byId("agenda-zone");
    const mine = Intl.DateTimeFormat().resolvedOptions().timeZone;
    zone.hidden = !body.timezone || body.timezone === mine;
    zone.textContent = zone.hidden ? "" :
      `The secretary keeps time in ${body.timezone}; times here are in yours (${mine}).`;
  }

  function showAgendaError(text) {
    const line = byId("agenda-error");
    line.textContent = text;
    line.hidden = !text;
  }

  async function loadAgenda() {
    const panel = byId("agenda");
    try {
      const body = await (await api("/api/agenda", { headers: { Accept: "application/json" } })).json();
      skills.on = true;
      render(body);
      panel.dataset.state = body.error ? "failed" : "ready";
      panel.dataset.loaded = new Date().toISOString();
      panel.hidden = false;
    } catch (err) {
      if (err.status === 404) { // the skills are off here (SECRETARY_CONVERSATION_BRAIN=echo)
        skills.on = false;
        panel.dataset.state = "off";
        panel.hidden = true;
      } else { // the server is away for a moment: say so in the panel, keep what it showed
        panel.dataset.state = "failed";
        showAgendaError(`The agenda could not be read: ${err.message}`);
        panel.hidden = false;
      }
    }
    syncStream();
  }

  // One read at a time; asks during a read make one more read after it.
  function refreshAgenda() {
    if (skills.loading) {
      skills.again = true;
      return skills.loading;
    }
    skills.loading = loadAgenda().finally(() => {
      skills.loading = null;
      if (skills.again) {
        skills.again = false;
        refreshAgenda();
      }
    });
    return skills.loading;
  }

  // ---------------------------------------------------------------- reminders

  // Listen for due reminders while the skills are on and Live mode is off. A stream the
  // server closed for good (an error answer) is opened again with the next agenda read.
  function syncStream() {
    const wanted = skills.on && !skills.live;
    if (wanted && !skills.stream) openStream();
    else if (!wanted && skills.stream) closeStream();
  }

  function openStream() {
    const source = new EventSource("/api/reminders/stream");
    skills.stream = source;
    const panel = byId("agenda");
    panel.dataset.reminders = "connecting";
    source.addEventListener("open", () => { panel.dataset.reminders = "listening"; });
    source.addEventListener("reminder", (e) => {
      let reminder;
      try { reminder = JSON.parse(e.data); } catch (_) { return; }
      onReminder(reminder);
    });
    source.addEventListener("error", () => {
      if (source.readyState !== EventSource.CLOSED) {
        panel.dataset.reminders = "reconnecting"; // the browser tries again by itself
        return;
      }
      if (skills.stream === source) skills.stream = null;
      panel.dataset.reminders = "off";
    });
  }

  function closeStream() {
    if (skills.stream) skills.stream.close();
    skills.stream = null;
    byId("agenda").dataset.reminders = "off";
  }

  function onReminder(reminder) {
    const key = `${reminder.uid}|${reminder.due}`;
    if (skills.seen.has(key)) return;
    skills.seen.add(key);
    const text = reminder.text || `Reminder: ${reminder.task}`;
    const li = showReminder(reminder, text);
    sayReminder(li, text, reminder.language);
    refreshAgenda();
  }

  function showReminder(reminder, text) {
    const li = document.createElement("li");
    li.dataset.testid = "reminder-alert";
    li.dataset.uid = reminder.uid || "";
    const bell = document.createElement("span");
    bell.className = "bell";
    bell.setAttribute("aria-hidden", "true");
    const words = document.createElement("span");
    words.className = "words";
    words.textContent = text;
    const due = document.createElement("time");
    if (reminder.due) {
      const date = new Date(reminder.due);
      due.dateTime = date.toISOString();
      due.textContent = when(date);
    }
    const again = document.createElement("button");
    again.type = "button";
    again.className = "link";
    again.textContent = "Hear it";
    again.dataset.testid = "reminder-play";
    again.addEventListener("click", () => sayReminder(li, text, reminder.language));
    const close = document.createElement("button");
    close.type = "button";
    close.className = "close";
    close.setAttribute("aria-label", "Dismiss");
    close.textContent = "×";
    close.addEventListener("click", () => {
      if (li.dataset.audio) URL.revokeObjectURL(li.dataset.audio);
      li.remove();
    });
    li.append(bell, words, due, again, close);
    byId("reminder-alerts").prepend(li);
    return li;
  }

  // The reminder's words through the text-to-speech route, once; "Hear it" plays them again.
  async function sayReminder(li, text, language) {
    const audio = byId("reminder-audio");
    try {
      if (!li.dataset.audio) {
        li.dataset.state = "voicing";
        const speech = await synthesize({ text, ...voiceFor(language || "en") });
        li.dataset.audio = URL.createObjectURL(speech);
      }
      audio.pause();
      audio.src = li.dataset.audio;
      audio.currentTime = 0;
      li.dataset.state = await play(audio) === "playing" ? "spoken" : "blocked";
      if (li.dataset.state === "blocked") {
        notify("The browser blocked autoplay: press “Hear it” to hear the reminder.", "info");
      }
    } catch (err) {
      li.dataset.state = "failed";
      notify(`The reminder could not be spoken: ${err.message}`);
    }
  }

  // ---------------------------------------------------------------- start

  // Live mode shows its state on #live-state (live.js): anything but "off" is a session.
  function watchLive() {
    const live = byId("live-state");
    const update = () => {
      const was = skills.live;
      skills.live = live.dataset.state !== "off";
      syncStream();
      if (was && !skills.live) refreshAgenda(); // the live talk may have changed things
    };
    new MutationObserver(update).observe(live, { attributes: true, attributeFilter: ["data-state"] });
    update();
  }

  document.addEventListener("DOMContentLoaded", () => {
    byId("ask").addEventListener("submit", ask);
    byId("agenda-refresh").addEventListener("click", () => refreshAgenda());
    document.addEventListener("secretary:replied", () => refreshAgenda());
    watchLive();
    refreshAgenda();
    setInterval(refreshAgenda, REFRESH_MS);
    window.addEventListener("pagehide", closeStream);
    window.addEventListener("pageshow", (e) => { if (e.persisted) refreshAgenda(); });
  });
})();
