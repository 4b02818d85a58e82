// KPI Integrations pages: dialogs, toasts, polling and the writes, which go to
// the JSON API with the page's CSRF token. The pages read fine without this.
"use strict";
(function () {
  // Styles may tell a page with its script from one without.
  document.documentElement.classList.add("js");
  const meta = document.querySelector('meta[name="csrf-token"]');
  const csrf = meta ? meta.content : "";
  const TOAST_KEY = "kpi-toast";

  // --- talking to the API -------------------------------------------------
  async function api(method, url, body) {
    const init = {
      method,
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf, Accept: "application/json" },
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (e) {
      return { ok: false, status: 0, detail: "The server could not be reached. Check your connection and try again." };
    }
    let data = null;
    const type = response.headers.get("content-type") || "";
    if (type.includes("json")) {
      try { data = await response.json(); } catch (e) { data = null; }
    }
    if (!response.ok) {
      let detail = (data && data.detail) || "The request failed (" + response.status + ").";
      if (data && Array.isArray(data.errors) && data.errors.length) {
        detail = data.errors.map((e) => e.message).join("; ");
        if (data.detail && !data.detail.startsWith("invalid field")) detail = data.detail;
      }
      if (response.status === 401) detail += ". Reload the page (or sign in again) and try again.";
      return { ok: false, status: response.status, detail, data };
    }
    return { ok: true, status: response.status, data };
  }

  // --- toasts ---------------------------------------------------------------
  const region = document.getElementById("toasts");
  function toast(text, tone) {
    if (!region) return;
    const box = document.createElement("div");
    box.className = "toast " + (tone || "ok");
    box.dataset.toast = tone || "ok";
    const p = document.createElement("p");
    p.textContent = text;
    const close = document.createElement("button");
    close.type = "button";
    close.className = "close";
    close.dataset.dismiss = "";
    close.setAttribute("aria-label", "Dismiss this message");
    close.textContent = "\u00d7";
    box.append(p, close);
    region.append(box);
  }
  function toastAfterReload(text, tone) {
    try { sessionStorage.setItem(TOAST_KEY, JSON.stringify({ text, tone })); } catch (e) { /* private mode */ }
  }
  function reload(text, tone) {
    if (text) toastAfterReload(text, tone);
    window.location.reload();
  }
  try {
    const kept = sessionStorage.getItem(TOAST_KEY);
    if (kept) {
      sessionStorage.removeItem(TOAST_KEY);
      const t = JSON.parse(kept);
      toast(t.text, t.tone);
    }
  } catch (e) { /* nothing kept */ }

  // --- errors next to what caused them --------------------------------------
  // The nearest enclosing form, dialog, rule or card that has an error slot.
  function errorSlot(el) {
    let at = el;
    while (at) {
      const scope = at.closest("form, dialog, li, article, section");
      if (!scope) return null;
      const slot = scope.querySelector("[data-error]");
      if (slot) return slot;
      at = scope.parentElement;
    }
    return null;
  }
  function showError(el, text) {
    const slot = errorSlot(el);
    if (slot) {
      slot.textContent = text;
      slot.hidden = false;
      slot.setAttribute("role", "alert");
    } else {
      toast(text, "bad");
    }
  }
  function clearError(el) {
    const slot = errorSlot(el);
    if (slot) { slot.hidden = true; slot.textContent = ""; }
  }
  function busy(el, on) {
    el.toggleAttribute("disabled", on);
    el.setAttribute("aria-busy", on ? "true" : "false");
  }

  // --- dialogs ----------------------------------------------------------------
  const optionsLoaded = new Set();
  async function loadOptions(select) {
    const url = select.dataset.options;
    if (!url || optionsLoaded.has(select)) return;
    optionsLoaded.add(select);
    const status = document.getElementById(select.getAttribute("aria-describedby"));
    if (status) status.textContent = "Loading the list…";
    const answer = await api("GET", url);
    if (!answer.ok) {
      optionsLoaded.delete(select);
      if (status) status.textContent = "The list could not be loaded: " + answer.detail;
      return;
    }
    const current = select.dataset.current;
    select.replaceChildren();
    const placeholder = new Option("Choose one", "");
    select.append(placeholder);
    const groups = new Map();
    for (const item of answer.data.options) {
      const label = item.group || "";
      let parent = select;
      if (label) {
        if (!groups.has(label)) {
          const g = document.createElement("optgroup");
          g.label = label;
          groups.set(label, g);
          select.append(g);
        }
        parent = groups.get(label);
      }
      let text = item.name;
      if (!item.selectable) {
        const why = item.details && (item.details.status || item.details.account_status);
        text += why ? " (" + why + ", cannot be chosen)" : " (cannot be chosen)";
      }
      const option = new Option(text, item.id, false, item.id === current);
      option.disabled = !item.selectable;
      parent.append(option);
    }
    if (!current) placeholder.selected = true;
    if (status) {
      const count = answer.data.options.length;
      status.textContent = answer.data.note || (count === 0 ? "Nothing to choose from in this account." : count + " to choose from.");
    }
  }
  function openDialog(id) {
    const dialog = document.getElementById(id);
    if (!dialog || typeof dialog.showModal !== "function") return;
    if (!dialog.open) dialog.showModal();
    dialog.querySelectorAll("select[data-options]").forEach(loadOptions);
  }

  document.addEventListener("click", (event) => {
    const target = event.target.closest("[data-open], [data-close], [data-dismiss], [data-connect], button[data-action]");
    if (!target) return;
    if (target.hasAttribute("data-open")) {
      event.preventDefault();
      openDialog(target.dataset.open);
    } else if (target.hasAttribute("data-close")) {
      const dialog = target.closest("dialog");
      if (dialog) dialog.close();
    } else if (target.hasAttribute("data-dismiss")) {
      target.closest(".toast").remove();
    } else if (target.hasAttribute("data-connect")) {
      // The browser goes to the provider; say so while it loads.
      target.classList.add("loading");
      target.setAttribute("aria-busy", "true");
      target.textContent = "Connecting…";
    } else {
      event.preventDefault();
      buttonAction(target);
    }
  });

  // --- buttons ------------------------------------------------------------------
  async function buttonAction(button) {
    const action = button.dataset.action;
    const url = button.dataset.url;
    clearError(button);
    busy(button, true);
    try {
      if (action === "patch") {
        const answer = await api("PATCH", url, JSON.parse(button.dataset.body));
        if (!answer.ok) return showError(button, answer.detail);
        return reload(button.dataset.done || "Saved.", "ok");
      }
      if (action === "post") {
        const answer = await api("POST", url);
        if (!answer.ok) return showError(button, answer.detail);
        const to = answer.data && answer.data.sent_to;
        return toast(to ? "Sent to " + to + ": “" + answer.data.subject + "”." : "Sent.", "ok");
      }
      if (action === "delete") {
        const answer = await api("DELETE", url);
        if (!answer.ok) return showError(button, answer.detail);
        const note = answer.data && answer.data.warning;
        return reload(note || button.dataset.done || "Removed.", note ? "bad" : "ok");
      }
      if (action === "disconnect") {
        const answer = await api("DELETE", url);
        if (!answer.ok) return showError(button, answer.detail);
        return reload(answer.data.detail || "Disconnected.", "ok");
      }
      if (action === "sync") {
        return startSync(button, url, undefined);
      }
      if (action === "retry") {
        const answer = await api("POST", url);
        if (!answer.ok) return showError(button, answer.detail);
        toast("Job queued again.", "ok");
        return pollAdminJob(button.dataset.poll, button);
      }
      if (action === "redrive") {
        const answer = await api("POST", url);
        if (!answer.ok) return showError(button, answer.detail);
        return reload("Redrive: " + answer.data.messages_moved + " messages moved, " + answer.data.jobs_requeued + " jobs queued again.", "ok");
      }
    } finally {
      busy(button, false);
    }
  }

  // --- sync jobs and their progress ---------------------------------------------
  const FINAL = new Set(["succeeded", "failed", "dead"]);
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  async function startSync(el, url, body) {
    const progress = document.getElementById(el.dataset.progress);
    const answer = await api("POST", url, body);
    if (!answer.ok) {
      showError(el, answer.detail);
      if (progress) progress.textContent = answer.detail;
      return;
    }
    const job = answer.data.job_id;
    if (progress) progress.textContent = answer.data.existing ? "A sync was already under way; following it…" : "Sync queued…";
    const jobsUrl = el.dataset.jobs;
    for (let i = 0; i < 600; i++) {
      await sleep(1000);
      const list = await api("GET", jobsUrl + "?limit=20");
      if (!list.ok) continue;
      const found = list.data.items.find((j) => j.id === job);
      if (!found) continue;
      if (progress) {
        progress.textContent = "Sync " + found.status + (found.rows_written ? ", " + found.rows_written + " rows written" : "") + (found.attempts > 1 ? ", attempt " + found.attempts : "") + "…";
      }
      if (FINAL.has(found.status)) {
        const ok = found.status === "succeeded";
        const text = ok
          ? "Sync finished: " + found.rows_written + " rows written."
          : "Sync " + found.status + ": " + ((found.last_error && found.last_error.message) || "see the card");
        return reload(text, ok ? "ok" : "bad");
      }
    }
  }

  async function pollAdminJob(url, button) {
    const row = button.closest("[data-job]");
    const badge = row ? row.querySelector("[data-job-status]") : null;
    const note = document.querySelector("[data-retry-progress]");
    for (let i = 0; i < 600; i++) {
      await sleep(1000);
      const answer = await api("GET", url);
      if (!answer.ok) continue;
      const status = answer.data.status;
      if (badge) {
        badge.textContent = status;
        badge.className = "badge status-" + status;
      }
      if (note) note.textContent = "Job " + status + ".";
      if (FINAL.has(status)) {
        button.hidden = status === "succeeded";
        return toast("Job " + status + ".", status === "succeeded" ? "ok" : "bad");
      }
    }
  }

  // A card waiting for its first sync reloads when it lands.
  document.querySelectorAll("[data-first-sync]").forEach(async (card) => {
    for (let i = 0; i < 300; i++) {
      await sleep(2000);
      const answer = await api("GET", card.dataset.firstSync);
      if (answer.ok && (answer.data.last_success_at || answer.data.status !== "connected")) {
        return reload();
      }
    }
  });

  // --- forms ----------------------------------------------------------------------
  const lines = (text) => text.split(/[\n,;]+/).map((s) => s.trim()).filter(Boolean);

  const forms = {
    async "connect-key"(form) {
      const input = form.elements.api_key;
      const key = input.value.trim();
      input.removeAttribute("aria-invalid");
      if (!key) {
        input.setAttribute("aria-invalid", "true");
        input.focus();
        return showError(form, "Enter the API key.");
      }
      if (!/^re_[A-Za-z0-9_-]+$/.test(key)) {
        input.value = "";
        input.setAttribute("aria-invalid", "true");
        input.focus();
        return showError(form, "That is not a Resend API key: they start with re_ and have no spaces.");
      }
      const answer = await api("POST", form.action, { provider: form.dataset.provider, api_key: key });
      // The key leaves the page either way: never kept in the field.
      input.value = "";
      if (!answer.ok) {
        input.setAttribute("aria-invalid", "true");
        input.focus();
        return showError(form, answer.detail);
      }
      if (form.dataset.replaces) await api("DELETE", form.dataset.replaces);
      reload(answer.data.display_name + " is connected.", "ok");
    },

    async "save-settings"(form) {
      const body = {};
      const settings = {};
      for (const select of form.querySelectorAll("select[data-choice]")) {
        if (select.value && select.value !== select.dataset.current) settings[select.name] = select.value;
        if (!select.value && !select.dataset.current) {
          select.setAttribute("aria-invalid", "true");
          return showError(form, "Choose one from the list first.");
        }
      }
      for (const input of form.querySelectorAll("input[data-setting]")) {
        const value = input.value.trim();
        if (value !== input.dataset.initial) settings[input.name] = value === "" ? null : value;
      }
      const windows = form.querySelectorAll('input[name="attribution_windows"]');
      if (windows.length) {
        const chosen = [...windows].filter((w) => w.checked).map((w) => w.value);
        settings.attribution_windows = chosen.length ? chosen : null;
      }
      if (Object.keys(settings).length) body.settings = settings;
      const freq = form.elements.sync_interval_minutes;
      if (freq && freq.value !== freq.dataset.initial) body.sync_interval_minutes = Number(freq.value);
      if (!Object.keys(body).length) return showError(form, "Nothing changed.");
      const answer = await api("PATCH", form.dataset.url, body);
      if (!answer.ok) return showError(form, answer.detail);
      // The first choice made: sync right away rather than at the next tick.
      if (form.dataset.was === "needs_configuration" && answer.data.status === "connected") {
        await api("POST", form.dataset.url + "/sync");
        return reload("Saved. The first sync has started.", "ok");
      }
      reload("Settings saved.", "ok");
    },

    async backfill(form) {
      const days = Number(form.elements.days.value);
      if (!Number.isInteger(days) || days < 1 || days > 1100) {
        form.elements.days.setAttribute("aria-invalid", "true");
        return showError(form, "Enter a whole number of days from 1 to 1100.");
      }
      const to = new Date();
      const from = new Date(to.getTime() - (days - 1) * 86400000);
      const day = (d) => d.toISOString().slice(0, 10);
      await startSync(form, form.dataset.url, { from: day(from), to: day(to) });
    },

    async "webhook-secret"(form) {
      const input = form.elements.webhook_secret;
      const secret = input.value.trim();
      input.removeAttribute("aria-invalid");
      if (!/^whsec_[A-Za-z0-9+/=]+$/.test(secret)) {
        input.value = "";
        input.setAttribute("aria-invalid", "true");
        input.focus();
        return showError(form, "Paste the webhook's signing secret: it starts with whsec_.");
      }
      const answer = await api("PATCH", form.dataset.url, { webhook_secret: secret });
      // The secret leaves the page either way: never kept in the field.
      input.value = "";
      if (!answer.ok) return showError(form, answer.detail);
      reload("Webhook secret saved: delivery events now arrive.", "ok");
    },

    async recipients(form) {
      const answer = await api("PUT", form.action, { recipients: lines(form.elements.recipients.value) });
      if (!answer.ok) return showError(form, answer.detail);
      reload("Recipients saved.", "ok");
    },

    async alert(form) {
      const f = form.elements;
      const condition = f.kind.value === "threshold"
        ? { kind: "threshold", comparison: f.comparison.value, threshold: f.threshold.value.trim() }
        : { kind: "change", percent: f.percent.value.trim(), direction: f.direction.value, versus: f.versus.value };
      const body = {
        name: f.name.value.trim(),
        condition,
        window: f.window.value,
        recipients: lines(f.recipients.value),
        cooldown_hours: Number(f.cooldown_hours.value || 24),
        notify_recovery: f.notify_recovery.checked,
      };
      if (form.dataset.method === "POST") {
        body.metric = f.metric.value;
        if (f.integration.value) body.integration = f.integration.value;
      }
      const answer = await api(form.dataset.method, form.dataset.url, body);
      if (!answer.ok) return showError(form, answer.detail);
      reload(form.dataset.method === "POST" ? "Rule created." : "Rule saved.", "ok");
    },

    async reports(form) {
      const f = form.elements;
      const body = {
        enabled: f.enabled.checked,
        frequency: f.frequency.value,
        weekday: f.weekday.value,
        hour: Number(f.hour.value),
        time_zone: f.time_zone.value.trim(),
        recipients: lines(f.recipients.value),
        metrics: [...form.querySelectorAll('input[name="metrics"]:checked')].map((m) => m.value),
      };
      const answer = await api("PUT", form.dataset.url, body);
      if (!answer.ok) return showError(form, answer.detail);
      reload("Schedule saved.", "ok");
    },
  };

  document.addEventListener("submit", async (event) => {
    const form = event.target;
    const handler = forms[form.dataset.action];
    if (!handler) return;
    event.preventDefault();
    clearError(form);
    const submit = form.querySelector('button[type="submit"]');
    if (submit) busy(submit, true);
    try {
      await handler(form);
    } finally {
      if (submit) busy(submit, false);
    }
  });

  const openOnLoad = document.querySelector("[data-open-on-load]");
  if (openOnLoad) openDialog(openOnLoad.dataset.openOnLoad);
})();
