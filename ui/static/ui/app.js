// Director's pages, enhanced: live Ready dots, the live timeline and process log, the YAML check as one
// types, drag-and-drop uploads, confirmations. Every page works without this script; it only adds.
// Text from the server is always set as text (textContent), never as markup.
"use strict";

(function () {
  function each(selector, run) {
    document.querySelectorAll(selector).forEach(run);
  }

  function byData(attribute, name) {
    return document.querySelectorAll(`[${attribute}="${CSS.escape(name)}"]`);
  }

  // ---- Ready dots: one stream per page for every site on it ----------------------------------------------
  function showSite(state) {
    byData("data-dot", state.name).forEach((dot) => {
      dot.className = `dot dot-${String(state.ready).toLowerCase()}`;
      dot.dataset.ready = state.ready;
      dot.setAttribute("aria-label", state.word);
    });
    byData("data-word", state.name).forEach((node) => { node.textContent = state.word; });
    const ready = state.word === "Ready";
    byData("data-reason", state.name).forEach((node) => {
      node.textContent = ready || state.reason === state.word ? "" : state.reason;
    });
    byData("data-message", state.name).forEach((node) => { node.textContent = ready ? "" : state.message; });
    if (state.running !== null && state.running !== undefined) {
      byData("data-tasks", state.name).forEach((node) => { node.textContent = `${state.running} of ${state.desired}`; });
    }
  }

  each("[data-live-sites]", (element) => {
    const source = new EventSource(element.dataset.liveSites);
    source.addEventListener("site", (event) => showSite(JSON.parse(event.data)));
    source.addEventListener("gone", (event) => {
      const name = JSON.parse(event.data).name;
      showSite({ name, ready: "Unknown", word: "Deleted", reason: "Deleted", message: "the site is gone" });
    });
  });

  // ---- the timeline of reconcile events -----------------------------------------------------------------
  function eventItem(entry) {
    const item = document.createElement("li");
    item.className = `event result-${entry.result}`;
    item.dataset.eventId = entry.id;
    const parts = [["time", entry.shownTime], ["step", entry.step], ["result", entry.result]];
    if (entry.count > 1) parts.push(["count", `×${entry.count}`]);
    parts.push(["event-message", entry.message]);
    parts.forEach(([kind, text], index) => {
      const node = document.createElement(kind === "time" ? "time" : "span");
      if (kind !== "time") node.className = kind;
      node.textContent = text;
      if (index) item.append(" ");
      item.append(node);
    });
    return item;
  }

  each("[data-live-events]", (list) => {
    const source = new EventSource(list.dataset.liveEvents);
    source.addEventListener("event", (message) => {
      const entry = JSON.parse(message.data);
      list.querySelectorAll(".empty").forEach((node) => node.remove());
      const item = eventItem(entry);
      const existing = list.querySelector(`[data-event-id="${entry.id}"]`);
      if (existing) existing.remove();
      list.prepend(item);
    });
  });

  // ---- a dynamic site's process log ---------------------------------------------------------------------
  each("[data-live-log]", (pre) => {
    const state = document.getElementById("log-state");
    function open() {
      const source = new EventSource(pre.dataset.liveLog);
      source.addEventListener("reset", () => { pre.textContent = ""; });
      source.addEventListener("line", (event) => {
        const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
        pre.append(document.createTextNode(JSON.parse(event.data).text + "\n"));
        if (state) state.textContent = "Following the log.";
        if (atEnd) pre.scrollTop = pre.scrollHeight;
      });
      source.addEventListener("waiting", (event) => { if (state) state.textContent = JSON.parse(event.data).message; });
      source.addEventListener("ended", (event) => {
        if (state) state.textContent = JSON.parse(event.data).message;
        source.close();
        setTimeout(open, 3000);
      });
    }
    open();
  });

  // ---- the YAML editor, checked by the server as one types ---------------------------------------------
  each("form[data-yaml-check]", (form) => {
    const textarea = form.querySelector("textarea[name=yaml]");
    const box = document.getElementById("yaml-problems");
    let timer = null;
    let sequence = 0;
    async function check() {
      const mine = ++sequence;
      const response = await fetch(form.dataset.yamlCheck, { method: "POST", body: new FormData(form), credentials: "same-origin" });
      if (mine !== sequence || !response.ok) return;
      const diagnostics = (await response.json()).diagnostics;
      box.textContent = "";
      if (!diagnostics.length) {
        const ok = document.createElement("p");
        ok.className = "muted";
        ok.id = "yaml-ok";
        ok.textContent = "Checked by the server: ready to save.";
        box.append(ok);
      } else {
        const list = document.createElement("ul");
        list.id = "yaml-errors";
        for (const item of diagnostics) {
          const entry = document.createElement("li");
          if (item.line) {
            const link = document.createElement("a");
            link.href = "#";
            link.dataset.line = item.line;
            link.textContent = `line ${item.line}`;
            entry.append(link, ": ");
          }
          entry.append(item.message);
          list.append(entry);
        }
        box.append(list);
      }
      if (window.DirectorEditor) window.DirectorEditor.showDiagnostics(textarea, diagnostics);
    }
    textarea.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(check, 500);
    });
    box.addEventListener("click", (event) => {
      const link = event.target.closest("a[data-line]");
      if (!link) return;
      event.preventDefault();
      if (window.DirectorEditor) window.DirectorEditor.goToLine(textarea, Number(link.dataset.line));
    });
  });

  // ---- uploads: drop files on the form -------------------------------------------------------------------
  each("form.upload", (form) => {
    const input = form.querySelector("input[type=file]");
    form.addEventListener("dragover", (event) => { event.preventDefault(); form.classList.add("dropping"); });
    form.addEventListener("dragleave", () => form.classList.remove("dropping"));
    form.addEventListener("drop", (event) => {
      event.preventDefault();
      form.classList.remove("dropping");
      input.files = event.dataTransfer.files;
    });
  });

  // ---- confirmations --------------------------------------------------------------------------------------
  each("form[data-confirm]", (form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });

  // ---- the file editor: Ctrl+S saves even in the plain textarea -----------------------------------------
  each("form.file-editor textarea", (textarea) => {
    textarea.addEventListener("keydown", (event) => {
      if ((event.ctrlKey || event.metaKey) && event.key === "s") {
        event.preventDefault();
        textarea.form.requestSubmit();
      }
    });
  });
})();
