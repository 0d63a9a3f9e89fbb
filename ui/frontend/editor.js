// The code editor of the web UI: CodeMirror 6 over a <textarea> that stays the form's field, so the form
// submits the same way with or without this script. Bundled at setup (npm ci && npm run build); the
// bundle is built, never committed.
import { basicSetup, EditorView } from "codemirror";
import { keymap } from "@codemirror/view";
import { lintGutter, setDiagnostics } from "@codemirror/lint";
import { css } from "@codemirror/lang-css";
import { html } from "@codemirror/lang-html";
import { javascript } from "@codemirror/lang-javascript";
import { json } from "@codemirror/lang-json";
import { python } from "@codemirror/lang-python";
import { yaml } from "@codemirror/lang-yaml";

const LANGUAGES = { css, html, javascript, json, python, yaml };

function labelOf(textarea) {
  const label = textarea.id && document.querySelector(`label[for="${textarea.id}"]`);
  return label ? label.textContent.trim() : "Editor";
}

function attach(textarea) {
  const language = LANGUAGES[textarea.dataset.editor];
  const form = textarea.form;
  const view = new EditorView({
    doc: textarea.value,
    extensions: [
      basicSetup,
      language ? language() : [],
      lintGutter(),
      EditorView.contentAttributes.of({ "aria-label": labelOf(textarea), "data-editor-for": textarea.id }),
      keymap.of([{ key: "Mod-s", preventDefault: true, run: () => { if (form) form.requestSubmit(); return true; } }]),
      EditorView.updateListener.of((update) => {
        if (!update.docChanged) return;
        textarea.value = update.state.doc.toString();
        textarea.dispatchEvent(new Event("input", { bubbles: true }));
      }),
    ],
  });
  textarea.parentNode.insertBefore(view.dom, textarea);
  textarea.style.display = "none";
  textarea.directorEditor = view;
  // The label still leads to the editor for keyboard and screen-reader users.
  const label = textarea.id && document.querySelector(`label[for="${textarea.id}"]`);
  if (label) label.addEventListener("click", () => view.focus());
}

function clamp(value, low, high) {
  return Math.max(low, Math.min(high, value));
}

// Problems from the server's check, each at its line and column (1-based), as lint diagnostics.
function showDiagnostics(textarea, diagnostics) {
  const view = textarea.directorEditor;
  if (!view) return;
  const doc = view.state.doc;
  const marks = [];
  for (const item of diagnostics) {
    if (!item.line) continue;
    const line = doc.line(clamp(item.line, 1, doc.lines));
    const from = clamp(line.from + (item.column || 1) - 1, line.from, line.to);
    marks.push({ from, to: Math.max(from, line.to), severity: "error", message: item.message });
  }
  view.dispatch(setDiagnostics(view.state, marks));
}

function goToLine(textarea, number) {
  const view = textarea.directorEditor;
  if (!view) return;
  const line = view.state.doc.line(clamp(number, 1, view.state.doc.lines));
  view.dispatch({ selection: { anchor: line.from }, scrollIntoView: true });
  view.focus();
}

window.DirectorEditor = { showDiagnostics, goToLine };
for (const textarea of document.querySelectorAll("textarea[data-editor]")) attach(textarea);
