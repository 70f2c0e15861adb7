// mydrive UI: passphrase checks, strength hint, tree toggles, upload and transfer progress.
// Served as a file (the Content-Security-Policy allows no inline script).
"use strict";

(function () {
  const MIN_CHARS = 8;

  function $(sel, root) { return (root || document).querySelector(sel); }
  function $all(sel, root) { return Array.from((root || document).querySelectorAll(sel)); }

  // ---- passphrase strength hint ---------------------------------------------------------
  function estimateBits(p) {
    if (!p) return 0;
    let pool = 0;
    if (/[a-z]/.test(p)) pool += 26;
    if (/[A-Z]/.test(p)) pool += 26;
    if (/[0-9]/.test(p)) pool += 10;
    if (/[^A-Za-z0-9]/.test(p)) pool += 33;
    const distinct = new Set(p).size;
    let bits = Math.min(p.length, distinct * 2) * Math.log2(Math.max(pool, 2));
    const words = p.trim().split(/[\s\-_.]+/).filter(function (w) { return w.length >= 3; });
    if (words.length >= 4) bits = Math.max(bits, words.length * 12 + 10);
    return bits;
  }

  const LEVELS = [
    ["", "At least " + MIN_CHARS + " characters. Several unrelated words make a strong passphrase."],
    ["Weak", "Too easy to guess. Add more words or characters."],
    ["Fair", "Could be stronger: add another word."],
    ["Good", "Good. One more word makes it strong."],
    ["Strong", "Hard to guess. Keep it somewhere safe: it can't be recovered."],
  ];

  function strengthLevel(p) {
    if (!p) return 0;
    if (p.length < MIN_CHARS) return 1;
    const bits = estimateBits(p);
    if (bits < 40) return 1;
    if (bits < 60) return 2;
    if (bits < 80) return 3;
    return 4;
  }

  $all("input[data-strength]").forEach(function (input) {
    const box = document.getElementById(input.dataset.strength);
    const text = document.getElementById(input.dataset.strength + "-text");
    function update() {
      const level = strengthLevel(input.value);
      box.dataset.level = String(level);
      const [name, advice] = LEVELS[level];
      text.textContent = name ? "Strength: " + name + ". " + advice : advice;
    }
    input.addEventListener("input", update);
    update();
  });

  // ---- passphrase and confirmation must match -------------------------------------------
  $all("form[data-passphrase-form]").forEach(function (form) {
    const confirm = $("input[data-confirms]", form);
    const primary = document.getElementById(confirm.dataset.confirms);
    const message = document.getElementById(confirm.id + "-match");
    const formError = document.getElementById("form-error");

    function showMatch(onSubmit) {
      const differ = confirm.value !== primary.value;
      if (!confirm.value && !onSubmit) {
        message.textContent = "";
        message.className = "match";
        confirm.removeAttribute("aria-invalid");
        return true;
      }
      if (differ) {
        message.textContent = "The passphrases do not match.";
        message.className = "match bad";
        confirm.setAttribute("aria-invalid", "true");
        return false;
      }
      message.textContent = "The passphrases match.";
      message.className = "match ok";
      confirm.removeAttribute("aria-invalid");
      return true;
    }
    confirm.addEventListener("input", function () { showMatch(false); });
    primary.addEventListener("input", function () { if (confirm.value) showMatch(false); });

    form.addEventListener("submit", function (event) {
      let problem = "";
      let focus = null;
      const empty = $all("input[required]", form).find(function (i) { return !i.value; });
      if (empty) {
        problem = "Please fill in every field.";
        focus = empty;
      } else if (primary.value.length < MIN_CHARS) {
        problem = "The passphrase needs at least " + MIN_CHARS + " characters.";
        focus = primary;
      } else if (!showMatch(true)) {
        problem = "The passphrases do not match: fix the confirmation before continuing.";
        focus = confirm;
      }
      if (problem) {
        event.preventDefault();
        if (formError) { formError.textContent = problem; formError.hidden = false; }
        focus.focus();
      }
    });
  });

  // ---- tree: expand / collapse all ------------------------------------------------------
  $all("button[data-tree]").forEach(function (button) {
    button.addEventListener("click", function () {
      const open = button.dataset.tree === "expand";
      $all("#tree details").forEach(function (d) { d.open = open; });
    });
  });

  // ---- transfer progress ----------------------------------------------------------------
  function pollJob(id, onUpdate) {
    function tick() {
      fetch("/api/jobs/" + encodeURIComponent(id), { headers: { Accept: "application/json" },
                                                    credentials: "same-origin" })
        .then(function (r) { return r.json().then(function (j) { return [r.ok, j]; }); })
        .then(function ([ok, job]) {
          if (!ok) { onUpdate(null, job.error || "lost track of the transfer"); return; }
          onUpdate(job, null);
          if (job.state !== "done" && job.state !== "failed") setTimeout(tick, 400);
        })
        .catch(function () { setTimeout(tick, 1500); });
    }
    tick();
  }

  // A failed file: what happened and what to do, the precise reason folded away.
  function errorParts(f) {
    const frag = document.createDocumentFragment();
    const span = document.createElement("span");
    span.className = "job-error";
    span.textContent = f.error_title + ".";
    frag.append(span, " " + f.error_advice);
    const why = document.createElement("details");
    why.className = "why";
    const summary = document.createElement("summary");
    summary.textContent = "Details";
    why.append(summary, f.error);
    frag.append(why);
    return frag;
  }

  // Upload: send with XMLHttpRequest (progress of the browser -> peer leg), then follow the
  // job that encrypts and stores the files on the other peers.
  const uploadForm = $("form[data-upload-form]");
  if (uploadForm) {
    uploadForm.addEventListener("submit", function (event) {
      const files = $("#files", uploadForm).files;
      if (!files.length) return;
      event.preventDefault();
      const status = $(".upload-status", uploadForm);
      const bar = $("#upload-progress");
      const text = $("#upload-text");
      const button = $("button[type=submit]", uploadForm);
      status.hidden = false;
      button.disabled = true;
      const data = new FormData(uploadForm);
      const xhr = new XMLHttpRequest();
      xhr.open("POST", uploadForm.action);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.setRequestHeader("X-CSRF-Token", data.get("csrf_token"));
      xhr.upload.addEventListener("progress", function (e) {
        if (!e.lengthComputable) return;
        const pct = Math.round(100 * e.loaded / e.total);
        bar.value = pct / 2;
        text.textContent = "Sending to this peer: " + pct + "%";
      });
      xhr.addEventListener("load", function () {
        let body = {};
        try { body = JSON.parse(xhr.responseText); } catch (err) { body = {}; }
        if (xhr.status !== 200) {
          text.textContent = "Upload failed: " + (body.title ? body.title + ": " : "") +
            (body.error || ("HTTP " + xhr.status));
          text.className = "bad";
          button.disabled = false;
          return;
        }
        text.textContent = "Encrypting and storing on other peers…";
        pollJob(body.job, function (job, error) {
          if (error) { text.textContent = error; text.className = "bad"; return; }
          const pct = job.size_bytes ? job.done_bytes / job.size_bytes : (job.state === "done" ? 1 : 0);
          bar.value = 50 + 50 * pct;
          if (job.state === "done") {
            text.textContent = "Stored " + job.files.length + " file(s).";
            text.className = "ok";
            setTimeout(function () { window.location.assign("/files?folder=" + encodeURIComponent(job.target)); }, 600);
          } else if (job.state === "failed") {
            const failed = job.files.filter(function (f) { return f.state === "failed"; });
            text.textContent = "";
            text.className = "";
            failed.forEach(function (f) {
              const line = document.createElement("div");
              const what = document.createElement("span");
              what.className = "job-error";
              what.textContent = "Not stored: " + f.path + " (" + f.error_title + ").";
              line.append(what, " " + f.error_advice);
              const why = document.createElement("details");
              why.className = "why";
              const summary = document.createElement("summary");
              summary.textContent = "Details";
              why.append(summary, f.error);
              line.append(why);
              text.append(line);
            });
            button.disabled = false;
          } else {
            text.textContent = "Encrypting and storing on other peers: " + Math.round(100 * pct) + "%";
          }
        });
      });
      xhr.addEventListener("error", function () {
        text.textContent = "Upload failed: the connection to this peer broke.";
        text.className = "bad";
        button.disabled = false;
      });
      xhr.send(data);
    });
  }

  // Transfer page: live per-file progress.
  const jobCard = $("[data-job]");
  if (jobCard && jobCard.dataset.jobState !== "done" && jobCard.dataset.jobState !== "failed") {
    pollJob(jobCard.dataset.job, function (job, error) {
      if (error) { $("#job-state").textContent = error; return; }
      $("#job-state").textContent = job.state;
      $("#job-state").className = "state state-" + job.state;
      jobCard.dataset.jobState = job.state;
      job.files.forEach(function (f) {
        const li = $all(".job-file", jobCard).find(function (el) { return el.dataset.path === f.path; });
        if (!li) return;
        li.dataset.state = f.state;
        const bar = $("progress", li);
        bar.max = Math.max(f.size_bytes, 1);
        bar.value = f.size_bytes ? f.done_bytes : (f.state === "done" ? 1 : 0);
        const state = $(".state", li);
        state.textContent = f.state;
        state.className = "state state-" + f.state;
        const detail = $(".job-detail", li);
        detail.textContent = "";
        if (f.state === "done" && f.local_path && job.kind === "download") {
          detail.append("Saved to ");
          const code = document.createElement("code");
          code.className = "path";
          code.textContent = f.local_path;
          detail.append(code);
        } else if (f.state === "failed") {
          detail.append(errorParts(f));
        } else if (f.state === "running" && f.size_bytes) {
          detail.textContent = Math.round(100 * f.done_bytes / f.size_bytes) + "%";
        }
      });
    });
  }
})();
