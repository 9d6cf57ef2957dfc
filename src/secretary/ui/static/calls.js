// The Calls panel: the telephone's latest calls (/api/calls, which this server asks the
// telephone service for): who called, when, how long, the summary, and the transcript
// behind each (a <details>). Where the telephone service is not running the panel says so
// in its status line (and shows the calls kept on this machine); nothing else complains.
// Loaded after app.js, whose api helper it uses.
"use strict";

(() => {
  const byId = (id) => document.getElementById(id);
  const REFRESH_MS = 30000; // the calls are read again this often
  const LIMIT = 20;

  const calls = {
    loading: null, // the read under way
    again: false, // another read was asked for while one ran
  };

  function caller(call) {
    const name = call.caller_name || "";
    const number = call.caller_number || "";
    if (name && number) return `${name} (${number})`;
    return name || number || "Unknown caller";
  }

  // "14:05" today, "Mon, Jun 2, 14:05" before.
  function started(iso) {
    const date = new Date(iso);
    const time = date.toLocaleTimeString([], { hour: "numeric", minute: "2-digit" });
    if (date.toDateString() === new Date().toDateString()) return time;
    return `${date.toLocaleDateString([], { weekday: "short", month: "short", day: "numeric" })}, ${time}`;
  }

  // 42 -> "0:42", 605 -> "10:05"
  function minutes(seconds) {
    const whole = Math.max(0, Math.round(Number(seconds) || 0));
    return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}`;
  }

  const WHO = { caller: "Caller", secretary: "Secretary", event: "" };

  function span(className, text) {
    const element = document.createElement("span");
    element.className = className;
    element.textContent = text;
    return element;
  }

  function transcript(call) {
    const list = document.createElement("ol");
    list.className = "transcript";
    list.dataset.testid = "call-transcript";
    for (const line of call.lines || []) {
      const li = document.createElement("li");
      li.dataset.who = line.who;
      li.append(span("at", minutes(line.at)), span("who", WHO[line.who] ?? line.who),
        span("text", line.text));
      list.append(li);
    }
    if (!list.children.length) {
      const li = document.createElement("li");
      li.append(span("text", "Nothing was said."));
      list.append(li);
    }
    return list;
  }

  function entry(call, open) {
    const li = document.createElement("li");
    li.dataset.testid = "call";
    li.dataset.id = call.id;
    const details = document.createElement("details");
    details.open = open;
    const summary = document.createElement("summary");
    const when = document.createElement("time");
    when.dateTime = call.started;
    when.textContent = started(call.started);
    const duration = span("duration", minutes(call.duration_s));
    duration.title = `${Number(call.duration_s || 0).toFixed(0)} s${call.end_reason ? `, ${call.end_reason}` : ""}`;
    const name = span("caller", caller(call));
    name.dataset.testid = "call-caller";
    const gist = span("summary", call.summary || "No message was left.");
    gist.dataset.testid = "call-summary";
    summary.append(name, when, duration, gist);
    details.append(summary, transcript(call));
    li.append(details);
    return li;
  }

  function render(body) {
    const list = byId("calls-list");
    // What the user opened stays open across a refresh.
    const open = new Set([...list.querySelectorAll("li[data-id] details[open]")]
      .map((d) => d.parentElement.dataset.id));
    const items = (body.data || []).map((call) => entry(call, open.has(call.id)));
    if (!items.length) {
      const li = document.createElement("li");
      li.className = "empty";
      li.textContent = "No calls yet";
      items.push(li);
    }
    list.replaceChildren(...items);
  }

  function status(text) {
    const line = byId("calls-status");
    line.textContent = text;
    line.hidden = !text;
  }

  async function loadCalls() {
    const panel = byId("calls");
    try {
      const res = await api(`/api/calls?limit=${LIMIT}`, { headers: { Accept: "application/json" } });
      const body = await res.json();
      render(body);
      panel.dataset.phone = body.phone || "unknown";
      panel.dataset.state = "ready";
      if (body.phone === "down") {
        const kept = (body.data || []).length ? " The calls it kept on this machine are shown." : "";
        status(`The telephone is not running: ${body.detail || "its service did not answer"}.${kept}`);
      } else {
        status("");
      }
    } catch (err) { // the server is away for a moment: say so here, keep what was shown
      panel.dataset.state = "failed";
      status(`The calls could not be read: ${err.message}`);
    }
    panel.dataset.loaded = new Date().toISOString();
  }

  // One read at a time; asks during a read make one more read after it.
  function refreshCalls() {
    if (calls.loading) {
      calls.again = true;
      return calls.loading;
    }
    calls.loading = loadCalls().finally(() => {
      calls.loading = null;
      if (calls.again) {
        calls.again = false;
        refreshCalls();
      }
    });
    return calls.loading;
  }

  document.addEventListener("DOMContentLoaded", () => {
    byId("calls-refresh").addEventListener("click", () => refreshCalls());
    refreshCalls();
    setInterval(refreshCalls, REFRESH_MS);
    window.addEventListener("pageshow", (e) => { if (e.persisted) refreshCalls(); });
  });
})();
