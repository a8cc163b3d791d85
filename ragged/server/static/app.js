// The page: ask, watch the answer stream (server-sent events over fetch, since EventSource
// cannot POST), click a citation to read its passage. No framework and no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY = "ragged-api-key";
let history = []; // {question, answer} of this conversation's answered turns, oldest first

function headers(extra = {}) {
  const key = localStorage.getItem(KEY);
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

// A request that asks for the API key once when the server wants one.
async function call(url, options = {}) {
  let response = await fetch(url, { ...options, headers: headers(options.headers) });
  if (response.status === 401) {
    const key = window.prompt("This server needs its API key (RAGGED_API_KEY):");
    if (key) {
      localStorage.setItem(KEY, key.trim());
      response = await fetch(url, { ...options, headers: headers(options.headers) });
    }
  }
  return response;
}

async function errorText(response) {
  try {
    const body = await response.json();
    return body.error ? body.error.message + (body.error.hint ? ` (${body.error.hint})` : "") : response.statusText;
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

async function loadCollections() {
  const select = $("collection");
  const response = await call("/collections");
  if (!response.ok) {
    $("status").textContent = await errorText(response);
    return;
  }
  const data = await response.json();
  select.replaceChildren(
    ...data.collections.map((name) => new Option(name, name, false, name === data.default)),
  );
  if (!data.collections.length) $("status").textContent = "no collections yet: run `ragged ingest`";
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// The answer's text with every [n] that names a given source made a button.
function renderAnswer(node, text, sources) {
  const byN = new Map(sources.map((s) => [s.n, s]));
  const parts = [];
  let last = 0;
  for (const match of text.matchAll(/\[(\d+)\]/g)) {
    const source = byN.get(Number(match[1]));
    if (!source) continue;
    parts.push(document.createTextNode(text.slice(last, match.index)));
    const button = el("button", "cite", match[0]);
    button.type = "button";
    button.title = source.label + (source.location ? ` (${source.location})` : "");
    button.addEventListener("click", () => showPassage(source));
    parts.push(button);
    last = match.index + match[0].length;
  }
  parts.push(document.createTextNode(text.slice(last)));
  node.replaceChildren(...parts);
}

async function showPassage(source) {
  const response = await call(source.url, { headers: { Accept: "application/json" } });
  const data = response.ok ? await response.json() : { ...source, file_url: null };
  $("passage-title").textContent = `[${source.n}] ${data.label}` + (data.location ? ` (${data.location})` : "");
  $("passage-text").textContent = data.text;
  const link = $("passage-file");
  link.hidden = !data.file_url;
  if (data.file_url) {
    link.href = data.file_url;
    link.onclick = localStorage.getItem(KEY) ? (event) => openWithKey(event, data.file_url) : null;
  }
  $("passage").hidden = false;
}

// With an API key a plain link cannot authenticate: fetch the file and open it from memory.
async function openWithKey(event, url) {
  event.preventDefault();
  const [path, fragment] = url.split("#");
  const response = await call(path);
  if (!response.ok) return;
  const blob = URL.createObjectURL(await response.blob());
  window.open(blob + (fragment ? `#${fragment}` : ""), "_blank", "noopener");
}

function renderSources(list, sources) {
  const shown = sources.filter((s) => s.cited);
  for (const source of shown.length ? shown : sources) {
    const item = el("li", source.cited ? "" : "uncited");
    const button = el("button", "cite", `[${source.n}]`);
    button.type = "button";
    button.addEventListener("click", () => showPassage(source));
    item.append(button, ` ${source.label}` + (source.location ? ` (${source.location})` : ""));
    list.append(item);
  }
}

// Server-sent events from a fetch body: blocks separated by a blank line.
async function* events(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trim());
      }
      if (data.length) yield { name, data: JSON.parse(data.join("\n")) };
    }
  }
}

async function ask(question) {
  $("empty").hidden = true;
  const turn = el("li", "turn");
  const answer = el("div", "answer streaming");
  const sourceList = el("ol", "sources");
  turn.append(el("div", "question", question), answer, sourceList);
  $("turns").append(turn);
  turn.scrollIntoView({ block: "end" });

  const response = await call("/ask", {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
    body: JSON.stringify({ question, collection: $("collection").value || null, history, stream: true }),
  });
  if (!response.ok) {
    answer.classList.remove("streaming");
    turn.append(el("div", "error", await errorText(response)));
    return;
  }
  let text = "";
  let sources = [];
  for await (const { name, data } of events(response)) {
    if (name === "standalone") {
      turn.querySelector(".question").after(el("div", "standalone", `searched for: ${data.question}`));
    } else if (name === "token") {
      text += data.text;
      answer.textContent = text.trimStart();
    } else if (name === "sources") {
      sources = data.sources;
    } else if (name === "error") {
      turn.append(el("div", "error", data.message + (data.hint ? ` (${data.hint})` : "")));
    } else if (name === "done") {
      answer.classList.remove("streaming");
      if (data.answer === null) {
        answer.textContent = "";
        turn.append(el("div", "notice", data.notice));
        renderSources(sourceList, sources);
      } else if (!data.in_documents) {
        answer.className = "answer not-found";
        answer.replaceChildren(el("span", "badge", "Not in your documents"), data.answer);
      } else {
        renderAnswer(answer, data.answer, sources);
        renderSources(sourceList, sources);
        if (data.notice) turn.append(el("div", "notice", data.notice));
      }
      if (data.answered) history.push({ question, answer: data.answer });
    }
  }
  answer.classList.remove("streaming");
}

document.addEventListener("DOMContentLoaded", () => {
  loadCollections();
  $("ask").addEventListener("submit", async (event) => {
    event.preventDefault();
    const question = $("question").value.trim();
    if (!question) return;
    $("question").value = "";
    $("send").disabled = true;
    try {
      await ask(question);
    } catch (error) {
      $("status").textContent = String(error);
    } finally {
      $("send").disabled = false;
      $("question").focus();
    }
  });
  $("question").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      $("ask").requestSubmit();
    }
  });
  $("new").addEventListener("click", () => {
    history = [];
    $("turns").replaceChildren();
    $("empty").hidden = false;
    $("passage").hidden = true;
  });
  $("collection").addEventListener("change", () => $("new").click());
  $("close").addEventListener("click", () => ($("passage").hidden = true));
});
