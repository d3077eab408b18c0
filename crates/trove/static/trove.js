// Trove's progressive enhancements. Every page works without this file.
"use strict";

// Syntax colouring of card code blocks (file pages are highlighted on the server and come
// with their spans): keywords, strings, comments and numbers, one line at a time. Text is
// only ever wrapped in spans, never parsed as HTML.
(function () {
  const KEYWORDS = {
    py: "and as assert async await break class continue def del elif else except False finally for from global if import in is lambda None nonlocal not or pass raise return True try while with yield",
    rs: "as async await break const continue crate dyn else enum extern false fn for if impl in let loop match mod move mut pub ref return self Self static struct super trait true type unsafe use where while",
    js: "async await break case catch class const continue default delete do else export extends false finally for function if import in instanceof let new null return super switch this throw true try typeof undefined var void while yield",
    json: "true false null",
    yaml: "true false null yes no",
    sh: "case do done elif else esac export fi for function if in local return then until while",
    toml: "true false",
    c: "auto break case char const continue default do double else enum extern float for goto if int long register return short signed sizeof static struct switch typedef union unsigned void volatile while",
  };
  const ALIASES = { python: "py", rust: "rs", javascript: "js", ts: "js", typescript: "js", yml: "yaml", bash: "sh", shell: "sh", cpp: "c", h: "c", cc: "c", hpp: "c", cu: "c", jsonl: "json" };
  const COMMENT = { py: "#", yaml: "#", sh: "#", toml: "#", rs: "//", js: "//", c: "//" };
  function langOf(name) {
    const key = (name || "").toLowerCase();
    return KEYWORDS[key] ? key : ALIASES[key];
  }
  function colour(text, lang) {
    const words = new Set(KEYWORDS[lang].split(" "));
    const comment = COMMENT[lang];
    const out = document.createDocumentFragment();
    const token = /("(?:[^"\\]|\\.)*"?|'(?:[^'\\]|\\.)*'?)|(\b\d[\w.]*\b)|([A-Za-z_][\w]*)|(\/\/.*$|#.*$)|([\s\S])/g;
    let m;
    let plain = "";
    const flush = () => { if (plain) { out.appendChild(document.createTextNode(plain)); plain = ""; } };
    const span = (cls, s) => { flush(); const e = document.createElement("span"); e.className = cls; e.textContent = s; out.appendChild(e); };
    while ((m = token.exec(text)) !== null) {
      if (m[1]) span("hl-s", m[1]);
      else if (m[2]) span("hl-n", m[2]);
      else if (m[3]) { if (words.has(m[3])) span("hl-k", m[3]); else plain += m[3]; }
      else if (m[4] && comment && m[4].startsWith(comment)) span("hl-c", m[4]);
      else plain += m[0];
    }
    flush();
    return out;
  }
  function highlight(el, lang) {
    if (!lang || el.childElementCount > 0) return;
    const text = el.textContent;
    if (text.length > 20000) return;
    el.replaceChildren(colour(text, lang));
  }
  document.querySelectorAll("article.card pre code[class^=language-]").forEach((code) => {
    highlight(code, langOf(code.className.replace("language-", "")));
  });
})();

// Copy buttons next to snippets and fresh token secrets.
document.querySelectorAll("[data-copy]").forEach((button) => {
  button.hidden = false;
  button.addEventListener("click", () => {
    const target = document.getElementById(button.dataset.copy);
    if (target && navigator.clipboard) navigator.clipboard.writeText(target.textContent.trim());
  });
});

// Uploads: drag and drop onto the form, the chosen files listed, and progress while the
// form is sent. Without this the plain form still submits the picked files.
document.querySelectorAll("form.upload").forEach((form) => {
  const input = form.querySelector("input[type=file]");
  const zone = form.querySelector(".dropzone");
  const list = form.querySelector("ul.chosen");
  const progress = form.querySelector(".upload-progress");
  const error = form.querySelector(".upload-error");
  form.querySelector(".dropzone-hint").hidden = false;
  const show = () => {
    list.replaceChildren(...Array.from(input.files).map((f) => {
      const li = document.createElement("li");
      li.textContent = `${f.name} (${f.size} bytes)`;
      return li;
    }));
  };
  input.addEventListener("change", show);
  ["dragenter", "dragover"].forEach((t) => zone.addEventListener(t, (e) => { e.preventDefault(); zone.classList.add("over"); }));
  ["dragleave", "drop"].forEach((t) => zone.addEventListener(t, () => zone.classList.remove("over")));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    if (e.dataTransfer && e.dataTransfer.files.length) { input.files = e.dataTransfer.files; show(); }
  });
  form.addEventListener("submit", (e) => {
    if (!window.XMLHttpRequest || !window.FormData) return;
    e.preventDefault();
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.upload.addEventListener("progress", (p) => {
      if (p.lengthComputable) { progress.hidden = false; progress.value = Math.round((100 * p.loaded) / p.total); }
    });
    xhr.addEventListener("load", () => {
      if (xhr.status < 400 && xhr.responseURL) { window.location.assign(xhr.responseURL); return; }
      error.textContent = xhr.getResponseHeader("X-Error-Message") || `Upload failed (${xhr.status})`;
      error.hidden = false;
    });
    xhr.addEventListener("error", () => { error.textContent = "Upload failed: the connection was lost."; error.hidden = false; });
    xhr.send(new FormData(form));
  });
});

// The inference widget of a model page: posts the form to the hub's inference API with the
// visitor's session and shows the answer as text (never as HTML).
(function () {
  for (const widget of document.querySelectorAll("section.widget")) {
    const form = widget.querySelector("form.infer-form");
    const output = widget.querySelector(".infer-output");
    const task = widget.dataset.task;
    const endpoint = widget.dataset.endpoint;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const text = form.elements.inputs.value;
      let url = endpoint;
      let body = { inputs: text };
      if (task === "sentence-similarity") {
        const sentences = form.elements.sentences.value.split("\n").map((s) => s.trim()).filter(Boolean);
        url = endpoint + "/pipeline/sentence-similarity";
        body = { inputs: { source_sentence: text, sentences } };
      } else if (task === "feature-extraction") {
        url = endpoint + "/pipeline/feature-extraction";
      } else if (task === "text-generation") {
        body = { inputs: text, parameters: { max_new_tokens: 40 } };
      }
      output.textContent = "Running…";
      try {
        const response = await fetch(url, {
          method: "POST",
          credentials: "same-origin",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(body),
        });
        const answer = await response.json();
        if (!response.ok) {
          output.textContent = "Error " + response.status + ": " + (answer.error || "");
          return;
        }
        output.textContent = render(task, answer, body);
      } catch (e) {
        output.textContent = "Error: " + e;
      }
    });
  }
  function render(task, answer, body) {
    if (task === "text-classification") {
      return answer[0].map((e) => e.label + "  " + e.score.toFixed(4)).join("\n");
    }
    if (task === "text-generation") return body.inputs + answer[0].generated_text;
    if (task === "token-classification") {
      if (answer.length === 0) return "(no entities)";
      return answer.map((e) => (e.entity_group || e.entity) + "  " + e.word + "  " + e.score.toFixed(4)).join("\n");
    }
    if (task === "fill-mask") {
      const first = Array.isArray(answer[0]) ? answer[0] : answer;
      return first.map((e) => e.score.toFixed(4) + "  " + e.sequence).join("\n");
    }
    if (task === "sentence-similarity") {
      return body.inputs.sentences.map((s, i) => answer[i].toFixed(4) + "  " + s).join("\n");
    }
    const vector = Array.isArray(answer[0]) ? answer[0] : answer;
    return "[" + vector.length + " dimensions] " + vector.slice(0, 8).map((x) => x.toFixed(4)).join(", ") + ", …";
  }
})();
