// The demo's bank screen and phone: no framework, no build step. Every POST carries the
// page's CSRF token in X-CSRFToken.
"use strict";
(function () {
  const token = document.querySelector('meta[name="csrf-token"]').content;
  const $ = (id) => document.getElementById(id);
  const statusWords = JSON.parse($("transfer-status").dataset.labels);
  let challenge = null;
  let call = null;

  async function send(method, url, body) {
    const response = await fetch(url, {
      method,
      headers: { "Content-Type": "application/json", "X-CSRFToken": token },
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
    return { status: response.status, body: await response.json() };
  }

  function show(el, text) { el.textContent = text; el.classList.remove("hidden"); }

  function showStatus(status) {
    const el = $("transfer-status");
    el.className = "status " + status;
    el.dataset.state = status;
    const text = status === "pending" ? el.dataset.pending
      : status === "verified" || status === "consumed" ? el.dataset.verified : el.dataset.ended;
    show(el, text + " (" + (statusWords[status] || status) + ")");
  }

  async function poll(id) {
    while (challenge && challenge.id === id) {
      const answer = await send("GET", "/demo/transfers/" + encodeURIComponent(id));
      if (answer.status !== 200) return;
      showStatus(answer.body.status);
      if (answer.body.status !== "pending") return;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }

  $("transfer-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("transfer-error").classList.add("hidden");
    const answer = await send("POST", "/demo/transfers", { amount: Number($("amount").value) });
    if (answer.status !== 201) {
      show($("transfer-error"), answer.body.detail || answer.body.error);
      return;
    }
    challenge = answer.body;
    $("callback").classList.remove("hidden");
    if (challenge.callback) {
      $("callback-number").textContent = challenge.callback.display;
      $("dial").value = challenge.callback.display;
      if (challenge.callback.code) {
        const code = $("callback-code");
        show(code, code.dataset.label.replace("{code}", challenge.callback.code));
      }
    }
    const expires = $("expires");
    expires.textContent = expires.dataset.label.replace("{at}", localTime(challenge.expires_at, expires.dataset.zone));
    showStatus("pending");
    poll(challenge.id);
  });

  function hear(answer) {
    const screen = $("screen");
    screen.textContent = "";
    for (const line of answer.say) {
      const p = document.createElement("p");
      p.textContent = line;
      screen.appendChild(p);
    }
    if (answer.ended) {
      const p = document.createElement("p");
      p.textContent = screen.dataset.ended;
      p.id = "call-ended";
      screen.appendChild(p);
      $("keys").classList.add("hidden");
      call = null;
    } else {
      $("keys").classList.remove("hidden");
    }
  }

  $("call").addEventListener("click", async () => {
    const to = normalise($("dial").value);
    const answer = await send("POST", "/demo/calls", { from: $("caller").value, to });
    if (answer.status !== 200) { $("screen").textContent = answer.body.error; return; }
    call = { from: $("caller").value, to, call_sid: answer.body.call_sid, action: answer.body.gather };
    hear(answer.body);
  });

  for (const key of document.querySelectorAll("#keys button")) {
    key.addEventListener("click", async () => {
      if (!call) return;
      const answer = await send("POST", "/demo/calls", { ...call, digits: key.dataset.key });
      if (answer.status === 200) hear(answer.body);
    });
  }

  // 2026-12-02T04:43:23.233Z -> "2026-12-02 13:43:23 JST" in the gateway's time zone, as the
  // console shows times.
  function localTime(iso, zone) {
    const at = new Date(iso);
    if (Number.isNaN(at.getTime())) return iso;
    try {
      const parts = {};
      const format = new Intl.DateTimeFormat("en-US", {
        timeZone: zone, hourCycle: "h23", timeZoneName: "short",
        year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit",
      });
      for (const part of format.formatToParts(at)) parts[part.type] = part.value;
      const name = zone === "Asia/Tokyo" ? "JST" : parts.timeZoneName;
      return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}:${parts.second} ${name}`;
    } catch (error) {
      return iso;
    }
  }

  // 050-3000-0001 as a person types it -> +815030000001, as Twilio would post it.
  function normalise(text) {
    const digits = text.normalize("NFKC").replace(/[^0-9+]/g, "");
    return digits.startsWith("+") ? digits : "+81" + digits.replace(/^0/, "");
  }
})();
